"""The published simulator's routing of a CDF workload (paper mode's routing quirks).

Each pool samples its own sub-CDF with no knot at its lower boundary (``paper_sub_cdf``),
optionally by 3000 seeded Monte-Carlo draws (``paper_mc_lengths``); with compress-and-route
(the paper's accounting) a pool of window B takes keys up to gamma x B.  Paper mode's
router (``fleetopt.routing.Router`` with the registry's ``sub_cdf_router``,
``SubCdfRouting``) calls them.  Reproduced on purpose; ``physical`` mode routes every
length exactly once (README).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fleetopt.traffic import PoolTraffic
from fleetopt.workload import from_cdf

Knots = Sequence[tuple[float, float]]
"""CDF knots [(total_tokens_le, cumulative_fraction), ...]."""


def cdf_at(knots: Knots, x: float) -> float:
    """The CDF at x by linear interpolation between knots (0 at 0)."""
    prev_t, prev_f = 0.0, 0.0
    for t, f in knots:
        if x <= t:
            return prev_f + (f - prev_f) * (x - prev_t) / (t - prev_t) if t > prev_t else f
        prev_t, prev_f = t, f
    return knots[-1][1]


def paper_sub_cdf(knots: Knots, lo: float, hi: float) -> tuple[list[tuple[float, float]], float]:
    """A pool's sub-CDF as the published simulator builds it (``_split_cdf``): the knots in
    (lo, hi] rescaled to [0, 1], closed by (hi, 1) when hi is not a knot, and NO knot at lo,
    so the pool's first bin starts at 0 tokens: a long pool samples lengths below its lower
    boundary.  Reproduced on purpose in paper mode (it shrinks the paper's long pools)."""
    f_lo, f_hi = cdf_at(knots, lo), cdf_at(knots, hi)
    share = f_hi - f_lo
    if share <= 0:
        return [], 0.0
    sub = [(t, (f - f_lo) / share) for t, f in knots if lo < t <= hi]
    if not sub or sub[-1][0] < hi:
        sub.append((hi, 1.0))
    else:
        sub[-1] = (sub[-1][0], 1.0)
    return sub, share


def paper_mc_lengths(sub: Knots, window: int, input_share: float, samples: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Integer (input, output) lengths drawn as the published simulator calibrates a pool:
    ``samples`` draws from ``random.Random(seed)``; each picks a sub-CDF bin by a uniform,
    then a uniform integer length in (previous knot, min(knot, window)] (the window when
    that range is empty); input = int(share x length), output = the rest, both >= 1."""
    rng = random.Random(seed)
    inp, out = np.empty(samples), np.empty(samples)
    for i in range(samples):
        u, length = rng.random(), window
        prev: float = 0
        for t, f in sub:
            if u <= f:
                lo, hi = int(prev) + 1, min(window, int(t))
                length = rng.randint(lo, hi) if lo <= hi else window
                break
            prev = t
        inp[i] = max(1, int(length * input_share))
        out[i] = max(1, length - inp[i])
    return inp, out


def paper_pool_traffic(knots: Knots, input_share: float, lo_split: float, hi_split: float, window: int,
                       samples: int | None = None, seed: int = 42) -> tuple[PoolTraffic, int]:
    """Paper-mode traffic of the pool sampling keys (lo_split, hi_split] (hi_split = inf for
    the last pool) with window ``window``: its own sub-CDF (``paper_sub_cdf``), lengths
    clamped to the window; with ``samples`` the lengths are the published simulator's
    Monte-Carlo draws (``paper_mc_lengths``), tokens credited by the exact integral."""
    sub, share = paper_sub_cdf(knots, lo_split, min(hi_split, knots[-1][0]))
    if share <= 0:
        return PoolTraffic(np.ones(1), np.ones(1), np.zeros(1), np.ones(1)), window
    d = from_cdf(sub, input_share)
    if samples:
        inp, o = paper_mc_lengths(sub, window, input_share, samples, seed)
        cred = np.full(samples, float(d.w @ d.out))
        return PoolTraffic(inp, o, np.full(samples, share / samples), cred), window
    tot = d.inp + d.out
    f = np.where(tot > window, window / tot, 1.0)
    return PoolTraffic(d.inp * f, d.out * f, d.w * share, d.out.copy()), window


@dataclass(frozen=True)
class SubCdfRouting:
    """The published simulator's routing of a CDF workload: the pool of keys (lo, hi]
    samples its own sub-CDF (``paper_pool_traffic``); with compress-and-route (the paper's
    accounting) a pool of window B takes keys up to gamma x B."""

    knots: Knots
    input_share: float
    samples: int | None
    seed: int
    gamma: float = 1.0

    def pool(self, lo: float, hi: float, next_hi: float | None) -> tuple[PoolTraffic, int]:
        """(traffic, window) of the pool of keys (lo, hi] (``next_hi`` None: the last pool)."""
        lo_split = int(self.gamma * lo) if lo > 0 else 0.0
        hi_split = math.inf if next_hi is None else int(self.gamma * hi)
        return paper_pool_traffic(self.knots, self.input_share, lo_split, hi_split, int(hi), self.samples, self.seed)

    def longer_than(self, window: float) -> tuple[float, float]:
        """(share of requests, longest key) beyond ``window``, read off the CDF."""
        top = float(self.knots[-1][0])
        return (max(0.0, 1.0 - cdf_at(self.knots, window)) if top > window else 0.0), top
