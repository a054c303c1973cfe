"""Queueing closed forms: Erlang-C in log space and the P99 wait of an M/G/c queue.

Erlang-C is evaluated as a ratio of Poisson terms summed in log space over the window
where they matter (mean +- 10 standard deviations: the terms outside are below e^-50 of
the largest, so the sum is exact to double precision), stable for 10^6 servers and more.
Both functions take scalars or arrays (the MILP's column generation sizes hundreds of pools
in one call); scalars give Python floats.
"""

from __future__ import annotations

import math

import numpy as np

from fleetopt.units import Num

_LGAMMA = np.frompyfunc(math.lgamma, 1, 1)
WINDOW_SD = 10.0
MAX_TERMS = 2_000_000
"""Poisson terms summed at a time (bounds memory when loads are vast)."""


def _lgamma(x: np.ndarray) -> np.ndarray:
    return _LGAMMA(x).astype(float) if x.size else np.zeros(0)


def log_erlang_c(c: Num, a: Num) -> Num:
    """log P(wait > 0) for M/M/c with offered load a = lambda/mu erlangs; 0 when a >= c.

    C = [a^c/c! * c/(c-a)] / [sum_{k<c} a^k/k! + a^c/c! * c/(c-a)]."""
    scalar = np.ndim(c) == 0 and np.ndim(a) == 0
    c_arr, a_arr = (np.array(x, dtype=float, ndmin=1) for x in np.broadcast_arrays(c, a))
    c_arr, a_arr = c_arr.ravel(), a_arr.ravel()
    out: np.ndarray = np.zeros(c_arr.shape)
    out[a_arr <= 0] = -math.inf
    ok = np.flatnonzero((a_arr > 0) & (a_arr < c_arr))
    if ok.size:
        sd = np.sqrt(a_arr[ok]) + 1.0
        k0 = np.maximum(0.0, np.floor(a_arr[ok] - WINDOW_SD * sd))
        k1 = np.minimum(c_arr[ok], np.ceil(a_arr[ok] + WINDOW_SD * sd) + 1.0)
        cum = np.cumsum(k1 - k0)
        parts = [np.arange(ok.size)]
        if cum[-1] > MAX_TERMS:              # at most about MAX_TERMS terms at a time (bounded memory)
            cuts = np.unique(np.searchsorted(cum, np.arange(MAX_TERMS, cum[-1], MAX_TERMS), "right"))
            parts = [q for q in np.split(parts[0], cuts[(cuts > 0) & (cuts < ok.size)]) if q.size]
        for q in parts:
            out[ok[q]] = _log_erlang_c_window(c_arr[ok[q]], a_arr[ok[q]], k0[q], k1[q])
    out = out.reshape(np.broadcast(c, a).shape)
    return float(out) if scalar else out


def _log_erlang_c_window(cc: np.ndarray, aa: np.ndarray, k0: np.ndarray, k1: np.ndarray) -> np.ndarray:
    """``log_erlang_c`` of stable entries (0 < a < c) from their Poisson terms k0 .. k1-1."""
    lens = (k1 - k0).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    seg = np.repeat(np.arange(cc.size), lens)
    ks = k0[seg] + (np.arange(lens.sum()) - starts[seg])
    la = np.log(aa)
    # log(a^k / k!) by cumulative sums of log(a/k) from each window's first term
    steps = la[seg] - np.log(np.maximum(ks, 1.0))
    steps[starts] = 0.0
    cs = np.cumsum(steps)
    logs = (k0 * la - _lgamma(k0 + 1.0))[seg] + cs - cs[starts][seg]
    m = np.maximum.reduceat(logs, starts)
    log_sum = m + np.log(np.add.reduceat(np.exp(logs - m[seg]), starts))
    log_last = cc * la - _lgamma(cc + 1.0) + np.log(cc / (cc - aa))
    out: np.ndarray = log_last - np.logaddexp(log_sum, log_last)
    return out


def erlang_c(c: Num, a: Num) -> Num:
    """P(wait > 0) for M/M/c."""
    return np.exp(log_erlang_c(c, a)) if np.ndim(c) or np.ndim(a) else math.exp(log_erlang_c(c, a))


def wait_quantile_mgc(c: Num, lam: Num, mean_s: Num, cv2: Num, q: float = 0.99) -> Num:
    """q-quantile of the M/G/c waiting time (Kimura's approximation, as the 1/W paper):
    t_q = ln(C / (1 - q)) (1 + cv^2) / (2 (c mu - lambda)), 0 when C <= 1 - q; inf if unstable.
    Units follow mean_s (lam is per the same unit).  Scalars or arrays."""
    scalar = all(np.ndim(x) == 0 for x in (c, lam, mean_s, cv2))
    c, lam, mean_s, cv2 = np.broadcast_arrays(*(np.asarray(x, float) for x in (c, lam, mean_s, cv2)))
    a = lam * mean_s
    tail = math.log(1.0 - q)
    # Screen (exact): C = B / (1 - rho (1 - B)) <= B / (1 - rho) and Erlang-B
    # B = p(c) / P(X <= c) <= 2 p(c) for X ~ Poisson(a) once c >= a + 1 (the Poisson median
    # is below a + 1/3), so C <= 2 p(c) / (1 - rho); where that is <= 1 - q the wait is 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.log(np.where(a > 0, a, 1.0))
        lub = math.log(2.0) - a + c * la - _lgamma(np.ravel(c) + 1.0).reshape(c.shape) - np.log1p(-a / c)
    need = (a < c) & ~((c >= a + 1.0) & (lub <= tail)) & (a > 0)
    lc = np.full(c.shape, -math.inf)
    if need.any():
        lc[need] = log_erlang_c(c[need], a[need])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (lc - tail) * (1.0 + cv2) / (2.0 * (c / mean_s - lam))
    t = np.where(a >= c, math.inf, np.where(lc <= tail, 0.0, t))
    return float(t) if scalar else t
