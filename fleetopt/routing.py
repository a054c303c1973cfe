"""Routing: which requests each pool of a topology serves, and at what lengths.

A pool of routing keys (lo, hi] serves its keys' requests; the last pool also takes every
longer request, its lengths scaled down to fit its window (the paper's convention, with a
warning).  Compress-and-route (``pools.compress``) moves a share of the requests with key
in (B, gamma B] into the pool of window B, their prompts compressed:

    paper accounting:       served at length B (80/20), outputs credited uncompressed
    consistent accounting:  prompt compressed to B - output; output served and credited

so the pool above loses that share of its keys in (B, gamma B].  Weights stay shares of all
traffic: a pool's arrival rate is the problem's rate x the sum of its weights.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fleetopt.errors import FleetoptWarning
from fleetopt.topology import PoolChoice, groups
from fleetopt.traffic import PoolTraffic
from fleetopt.workload import LengthDist

if TYPE_CHECKING:
    from fleetopt.instance import Compress
    from fleetopt.profiles.paper_routing import SubCdfRouting


def pool_traffic(dist: LengthDist, lo: float, hi: float, next_hi: float | None,
                 compress: Compress | None = None) -> tuple[PoolTraffic, int]:
    """The traffic of the pool of routing keys (lo, hi] and its window.  ``next_hi`` is the
    next pool's upper bound (math.inf when the next pool is the last), None when this pool
    is the last: requests beyond ``hi`` are then clamped into it (lengths scaled to fit
    its window).  With ``compress``, a fraction ``success`` of the requests with key in
    (B, gamma x B] (B = hi, taken from the next pool) are served here compressed to fit,
    and this pool likewise gives up that fraction of its own keys in (lo, gamma x lo]."""
    last = next_hi is None
    s = dist.slice(lo, math.inf if last else hi)
    inp, out, w, key = dist.inp[s].copy(), dist.out[s].copy(), dist.w[s].copy(), dist.key[s]
    if last:
        inp, out = clamp_to_window(inp, out, hi)
    cred = out.copy()
    if compress is not None and compress.success > 0:
        if lo > 0:              # own requests that the pool below serves compressed
            gone = key <= compress.gamma * lo
            if compress.accounting == "consistent":
                gone &= out < lo
            w = np.where(gone, w * (1 - compress.success), w)
        if next_hi is not None:     # the next pool's requests this pool serves compressed
            s2 = dist.slice(hi, next_hi)
            i, o, k2 = dist.inp[s2], dist.out[s2], dist.key[s2]
            sel = k2 <= compress.gamma * hi
            if compress.accounting == "consistent":
                sel &= o < hi
            if sel.any():
                i, o, w2 = i[sel], o[sel], dist.w[s2][sel] * compress.success
                if compress.accounting == "paper":   # served at length B, credited uncompressed
                    f = hi / (i + o)
                    ci, co, cr = i * f, o * f, o
                else:                                # prompt compressed to B - output; output served and credited
                    ci, co, cr = np.maximum(hi - o, 1.0), o, o
                inp, out = np.concatenate([inp, ci]), np.concatenate([out, co])
                w, cred = np.concatenate([w, w2]), np.concatenate([cred, cr])
    window = int(max(hi, float(np.max(inp + out)) if len(inp) else hi))
    return PoolTraffic(inp, out, w, cred), window


def clamp_to_window(inp: np.ndarray, out: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Requests longer than the window, scaled down to fit it (the last pool takes every
    longer request): both lengths by window / total, floored, at least 1 token."""
    tot = inp + out
    over = tot > window
    if not over.any():
        return inp, out
    f = np.where(over, window / tot, 1.0)
    return np.maximum(np.floor(inp * f), 1.0), np.maximum(np.floor(out * f), 1.0)


def pool_bounds(uppers: Sequence[int]) -> list[tuple[float, int, float | None]]:
    """(lo, hi, next_hi) of each pool of a topology, as ``pool_traffic`` takes them."""
    n = len(uppers)
    lows = [0, *uppers[:-1]]
    nexts = [math.inf if k + 1 == n - 1 else (uppers[k + 1] if k + 1 < n else None) for k in range(n)]
    return list(zip(lows, uppers, nexts))


class Router:
    """The routing of one problem, pool by pool: by routing key over the length
    distribution (``pool_traffic``), or, when the mode routes CDF workloads as the
    published simulator does, by each pool's own sub-CDF (``sub_cdf``,
    ``fleetopt.profiles.paper_routing.SubCdfRouting``).  ``pool(lo, hi, next_hi)`` gives one pool's
    (traffic, window); ``next_hi`` as in ``pool_traffic`` (None for the last pool)."""

    def __init__(self, dist: LengthDist, compress: Compress | None = None,
                 sub_cdf: SubCdfRouting | None = None) -> None:
        self.dist, self.compress, self.sub_cdf = dist, compress, sub_cdf

    @property
    def paper(self) -> bool:
        """Whether pools are routed by the published sub-CDF construction."""
        return self.sub_cdf is not None

    def with_compress(self, compress: Compress | None) -> Router:
        """The same routing with another compress-and-route setting."""
        sub = self.sub_cdf
        if sub is not None:
            sub = dataclasses.replace(sub, gamma=compress.gamma if compress is not None else 1.0)
        return Router(self.dist, compress, sub)

    def pool(self, lo: float, hi: float, next_hi: float | None) -> tuple[PoolTraffic, int]:
        """The traffic of the pool of keys (lo, hi] and its window (the last pool warns
        when it clamps longer requests)."""
        if next_hi is None:
            self.warn_clamped(hi)
        if self.sub_cdf is None:
            return pool_traffic(self.dist, lo, hi, next_hi, self.compress)
        return self.sub_cdf.pool(lo, hi, next_hi)

    def route(self, uppers: Sequence[int]) -> list[tuple[PoolTraffic, int]]:
        """(traffic, window) of each pool of a topology's upper bounds."""
        return [self.pool(lo, hi, nx) for lo, hi, nx in pool_bounds(uppers)]

    def longer_than(self, window: float) -> tuple[float, float]:
        """(share of requests, longest routing key) beyond ``window``: what the last pool
        serves clamped to its window."""
        if self.sub_cdf is not None:
            return self.sub_cdf.longer_than(window)
        k = self.dist.key
        return float(self.dist.w[k > window].sum()), float(k[-1])

    def warn_clamped(self, window: float) -> None:
        """Requests longer than the last pool's window are served clamped to it (the
        paper's convention): say so, once, with the share of traffic affected."""
        share, top = self.longer_than(window)
        if share > 0:
            warnings.warn(f"{100 * share:.3g} % of requests (up to {top:.0f} tokens) are longer than the last "
                          f"pool's window of {window:.0f} tokens and are served clamped to it; raise "
                          f"pools.max_window or the topology's last upper bound", FleetoptWarning, stacklevel=2)

    def route_members(self, topology: Sequence[PoolChoice]) -> list[tuple[int, PoolTraffic, int]]:
        """Per topology entry: (lower bound, its range's traffic, window); the members of a
        mixed range share their range's (each takes its share of the rate)."""
        grp = groups(topology)
        lows = [0] + [up for up, _ in grp[:-1]]
        routed = self.route([up for up, _ in grp])
        return [(lo, t, w) for lo, (t, w), (_, idx) in zip(lows, routed, grp) for _ in idx]
