"""Queueing closed forms: Erlang-C in log space and the P99 wait of an M/G/c queue.

Erlang-C is evaluated as a ratio of Poisson terms summed in log space over the window
where they matter (mean +- 40 standard deviations), so it is exact to double precision and
stable for 10^6 servers and more.
"""

from __future__ import annotations

import math

import numpy as np


def log_erlang_c(c: int, a: float) -> float:
    """log P(wait > 0) for M/M/c with offered load a = lambda/mu erlangs (requires a < c).

    C = [a^c/c! * c/(c-a)] / [sum_{k<c} a^k/k! + a^c/c! * c/(c-a)]."""
    if a <= 0:
        return -math.inf
    if a >= c:
        return 0.0
    sd = math.sqrt(a) + 1.0
    k0 = max(0, int(a - 40 * sd))
    ks = np.arange(k0, c, dtype=float)
    if ks.size == 0:
        log_sum = -math.inf
    else:
        # log(a^k / k!) = k ln a - lgamma(k + 1), by cumulative sums from k0
        base = k0 * math.log(a) - math.lgamma(k0 + 1)
        steps = np.log(a) - np.log(np.maximum(ks[1:], 1.0))
        logs = base + np.concatenate(([0.0], np.cumsum(steps)))
        m = logs.max()
        log_sum = m + math.log(np.exp(logs - m).sum())
    log_last = c * math.log(a) - math.lgamma(c + 1) + math.log(c / (c - a))
    return log_last - np.logaddexp(log_sum, log_last)


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) for M/M/c."""
    return math.exp(log_erlang_c(c, a))


def wait_quantile_mgc(c: int, lam: float, mean_s: float, cv2: float, q: float = 0.99) -> float:
    """q-quantile of the M/G/c waiting time (Kimura's approximation, as the 1/W paper):
    t_q = ln(C / (1 - q)) (1 + cv^2) / (2 (c mu - lambda)), 0 when C <= 1 - q; inf if unstable.
    Units follow mean_s (lam is per the same unit)."""
    a = lam * mean_s
    if a >= c:
        return math.inf
    lc = log_erlang_c(c, a)
    tail = math.log(1.0 - q)
    if lc <= tail:
        return 0.0
    mu = 1.0 / mean_s
    return (lc - tail) * (1.0 + cv2) / (2.0 * (c * mu - lam))
