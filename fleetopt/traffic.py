"""The traffic a pool serves, as data: one pool's requests (``PoolTraffic``) and many
pools' requests as ragged arrays with the statistics sizing reads (``TrafficBatch``).

Routing (``fleetopt.routing``) produces them; sizing (``fleetopt.sizing``), the simulator
and the energy reports read them.  Weights are shares of ALL traffic, so a pool's share of
the arrival rate is the sum of its weights.
"""

from __future__ import annotations

import msgspec
import numpy as np


class PoolTraffic(msgspec.Struct, frozen=True):
    """Requests a pool serves: lengths as served (after any compression), weights as a share
    of all traffic, and the output tokens credited per request."""

    inp: np.ndarray
    out: np.ndarray
    w: np.ndarray
    credit: np.ndarray

    @property
    def share(self) -> float:
        """The pool's share of all requests: sum of its points' weights."""
        return float(self.w.sum())


class TrafficBatch(msgspec.Struct):
    """The traffic of m pools as ragged arrays (``seg`` = pool index of each point) with
    the statistics that do not depend on the GPU: computed once, reused for every config."""

    seg: np.ndarray
    inp: np.ndarray
    out: np.ndarray
    w: np.ndarray
    credit: np.ndarray
    share: np.ndarray
    e_in: np.ndarray
    e_out: np.ndarray
    mean_kv: np.ndarray
    """Time-average tokens a sequence holds: E[out (in + out/2)] / E[out]."""
    inp_q99: np.ndarray
    """Weighted P99 of the prompt length per pool (prefill time rises with it, so the P99
    prefill is the prefill of this prompt)."""
    credit_mean: np.ndarray
    uniq_inp: np.ndarray
    inv: np.ndarray
    pair_seg: np.ndarray
    """The points collapsed to distinct (pool, prompt length) pairs: pool of each pair,"""
    pair_inv: np.ndarray
    """its prompt length (index into uniq_inp),"""
    pair_w: np.ndarray
    """sum of w and"""
    pair_wo: np.ndarray
    """sum of w x out over the pair's points."""
    w_o: np.ndarray
    """Per pool: sum of w x out and"""
    w_o2: np.ndarray
    """sum of w x out^2 (service-time moments are affine in the step: see pool_shapes)."""

    @property
    def m(self) -> int:
        """Pools in the batch."""
        return len(self.share)

    @classmethod
    def of(cls, traffics: list[PoolTraffic]) -> TrafficBatch:
        """The batch of these pools' traffics (statistics per pool, points concatenated)."""
        m = len(traffics)
        seg = np.repeat(np.arange(m), [len(t.w) for t in traffics])
        inp, out, w, cred = (np.concatenate([getattr(t, f) for t in traffics]).astype(float)
                             for f in ("inp", "out", "w", "credit"))
        share = np.bincount(seg, w, m)
        safe = np.where(share > 0, share, 1.0)
        e_in, e_out = np.bincount(seg, w * inp, m) / safe, np.bincount(seg, w * out, m) / safe
        mean_kv = np.bincount(seg, w * out * (inp + out / 2.0), m) / safe / np.where(e_out > 0, e_out, 1.0)
        # distinct (pool, prompt length) pairs, sorted by pool then prompt length
        uniq, inv = np.unique(inp, return_inverse=True)
        pairs, pinv = np.unique(seg * len(uniq) + inv, return_inverse=True)
        p_seg, p_inv, p_w = pairs // len(uniq), pairs % len(uniq), np.bincount(pinv, w, len(pairs))
        # P99 prompt per pool: the first pair whose cumulative weight in its pool reaches 99 %
        cs = np.cumsum(p_w)
        start = np.searchsorted(p_seg, np.arange(m))
        before = np.where(start > 0, cs[np.maximum(start - 1, 0)], 0.0)
        reached = cs - before[p_seg] >= 0.99 * share[p_seg] * (1 - 1e-12)
        first = np.full(m, len(pairs) - 1)
        np.minimum.at(first, p_seg[reached], np.flatnonzero(reached))
        return cls(seg, inp, out, w, cred, share, e_in, e_out, mean_kv, uniq[p_inv[first]],
                   np.bincount(seg, w * cred, m) / safe, uniq, inv, p_seg, p_inv, p_w,
                   np.bincount(pinv, w * out, len(pairs)), np.bincount(seg, w * out, m),
                   np.bincount(seg, w * out**2, m))
