"""Integer searches on rising functions, the largest batch whose step meets TPOT, the
points sizing reads the physics at (``cap_points``), and the mean batch of a pool whose
steps follow the batch running (``mean_batch``, ``refine_mean_batch``, ``settled_batch``).

The sizing layer asks two questions of a rising function many times, vectorised over pools:
the largest batch whose step time is within the TPOT target (``tpot_batch_cap``, on
``search_rising``) and the least instance count whose P99 TTFT meets its SLO
(``bisect_int``).  Both work on arrays of brackets at once, one function call per round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile



IndexFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""f(n, index array): a function evaluated at n for the elements at those indices."""


def bisect_int(pred: IndexFn, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per element the largest n in [lo, hi) with pred true, given pred(lo) true and
    pred(hi) false and pred monotone (true then false).  pred takes (n, index array)."""
    lo, hi = lo.astype(np.int64).copy(), hi.astype(np.int64).copy()
    while True:
        act = np.flatnonzero(hi - lo > 1)
        if not act.size:
            return lo
        mid = (lo[act] + hi[act]) // 2
        ok = pred(mid, act)
        lo[act] = np.where(ok, mid, lo[act])
        hi[act] = np.where(ok, hi[act], mid)


def search_rising(f: IndexFn, target: float, lo: np.ndarray, hi: np.ndarray, f_lo: np.ndarray, f_hi: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per element the largest integer n in [lo, hi) with f(n) <= target, for f rising in n
    with f(lo) <= target < f(hi), and f(n).  f takes (n, index array).
    Step time is nearly affine in the batch, so an interpolation step evaluates the pair
    (g, g + 1) around the interpolated crossing g in one call: when the pair straddles the
    target the element is done.  Bisection steps alternate with interpolation steps, so the
    worst case stays logarithmic."""
    lo, hi = lo.astype(np.int64).copy(), hi.astype(np.int64).copy()
    f_lo, f_hi = f_lo.astype(float).copy(), f_hi.astype(float).copy()
    interp = True
    while True:
        act = np.flatnonzero(hi - lo > 1)
        if not act.size:
            return lo, f_lo
        lo_a, hi_a = lo[act], hi[act]
        if interp:
            frac = (target - f_lo[act]) / np.maximum(f_hi[act] - f_lo[act], 1e-300)
            g = np.clip(lo_a + np.floor(frac * (hi_a - lo_a)).astype(np.int64), lo_a + 1, hi_a - 1)
            pair = np.flatnonzero(g + 1 < hi_a)              # g + 1 = hi_a is known already
            v = f(np.concatenate([g, g[pair] + 1]), np.concatenate([act, act[pair]]))
            v_g, v_g1 = v[:act.size], np.full(act.size, np.inf)
            v_g1[pair] = v[act.size:]
            ok_g, ok_g1 = v_g <= target, v_g1 <= target
            # new bracket: (g+1, h) if both fit, (g, g+1) if only g fits, (l, g) if neither
            new_l = np.where(ok_g1, g + 1, np.where(ok_g, g, lo_a))
            new_h = np.where(ok_g1, hi_a, np.where(ok_g, g + 1, g))
            lo[act], hi[act] = new_l, new_h
            f_lo[act] = np.where(ok_g1, v_g1, np.where(ok_g, v_g, f_lo[act]))
            f_hi[act] = np.where(ok_g1, f_hi[act], np.where(ok_g, np.where(np.isinf(v_g1), f_hi[act], v_g1), v_g))
        else:
            mid = (lo_a + hi_a) // 2
            v = f(mid, act)
            ok = v <= target
            lo[act], f_lo[act] = np.where(ok, mid, lo_a), np.where(ok, v, f_lo[act])
            hi[act], f_hi[act] = np.where(ok, hi_a, mid), np.where(ok, f_hi[act], v)
        interp = not interp


def tpot_batch_cap(profile: Profile, kv_slots: np.ndarray, mean_kv: np.ndarray, pf_per_seq: np.ndarray,
                   pf_ctx: np.ndarray, tpot_ms: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Largest batch <= kv_slots whose mean step (prefill mixed in) is within tpot_ms, and
    that step; 0 slots when even one sequence misses the target.  Arrays (one per pool):

        slots = max {b <= kv_slots : step(b, mean_kv, b x pf_per_seq, pf_ctx) <= tpot_ms}"""
    kv_slots = np.maximum(np.asarray(kv_slots, np.int64), 1)

    def step(b: np.ndarray, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        op = profile.operating_point(b, mean_kv[idx], b * pf_per_seq[idx], pf_ctx[idx], decode=False,
                                     whole_prompts=True)
        return np.asarray(op.step_ms, float) * np.ones(np.shape(b))

    s_top = step(kv_slots.astype(float))
    if tpot_ms is None:
        return kv_slots, s_top
    slots, s = kv_slots.copy(), s_top.copy()
    over = np.flatnonzero(s_top > tpot_ms)
    if over.size:
        s1 = step(np.ones(over.size), over)
        fits = s1 <= tpot_ms
        slots[over[~fits]], s[over[~fits]] = 0, s1[~fits]
        srch = over[fits]
        if srch.size:   # step(lo) <= tpot < step(hi); step rises with batch
            slots[srch], s[srch] = search_rising(lambda n, i: step(n.astype(float), srch[i]), tpot_ms,
                                                  np.ones(srch.size), kv_slots[srch], s1[fits], s_top[srch])
    return slots, s


def _chord_fixed_point(lam: np.ndarray, b_a: np.ndarray, s_a: np.ndarray, b_b: np.ndarray, s_b: np.ndarray,
                       e_pre: np.ndarray, e_out: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed point of b = lam (E[pre] + step(b) E[out]) with step the line through (b_a, s_a)
    and (b_b, s_b) (one point where the two coincide: slope 0),

        k = (s_b - s_a) / (b_b - b_a),  b* = lam (E[pre] + (s_a - k b_a) E[out]) / (1 - lam k E[out]),

    clipped to [0, top]; returns b* and E[S(b*)] = E[pre] + step(b*) E[out]."""
    span = b_b - b_a
    wide = np.abs(span) > 1e-9
    k = np.where(wide, (s_b - s_a) / np.where(wide, span, 1.0), 0.0)
    num = lam * (e_pre + (s_a - k * b_a) * e_out)
    den = 1.0 - lam * k * e_out
    b = np.clip(np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), top), 0.0, top)
    return b, e_pre + (s_a + k * (b - b_a)) * e_out


def mean_batch(lam_inst_ms: np.ndarray, slots: np.ndarray, b_util: np.ndarray, step_ms: np.ndarray,
               step_util_ms: np.ndarray, e_pre_ms: np.ndarray, e_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean batch b* and mean slot time E[S(b*)], ms, of pools receiving ``lam_inst_ms``
    requests per ms per instance: the fixed point of Little's law with steps that follow the
    batch (vLLM steps whatever is running),

        b = lam (E[pre] + step(b) E[out]),  step(b) = step_u + k (b - b_u),
        k = (step(slots) - step_u) / (slots - b_u)          (the chord where step was evaluated)

    (``_chord_fixed_point``), clipped to [0, slots].  With no output term (the paper's fixed
    service times) b* = lam E[pre], the published model's occupancy.  Below b_u the chord is
    an extrapolation; ``refine_mean_batch`` corrects it with the step at b*."""
    top = np.maximum(slots, 1).astype(float)
    return _chord_fixed_point(lam_inst_ms, b_util, step_util_ms, top, step_ms, e_pre_ms, e_out, top)


def refine_mean_batch(lam_inst_ms: np.ndarray, slots: np.ndarray, b0: np.ndarray, step0_ms: np.ndarray,
                      b_util: np.ndarray, step_util_ms: np.ndarray, e_pre_ms: np.ndarray,
                      e_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One secant step of the same fixed point from ``mean_batch``'s b0, with the step
    evaluated there (``step0_ms`` = step(b0)): the chord through (b0, step(b0)) and
    (b_u, step_u), both on the curve.  Where b0 sits well below b_u the first chord was an
    extrapolation, off by the step's curvature (MoE steps bend: a few per cent of the batch);
    the secant brackets the fixed point between evaluated points.  At b0 = b_u (the
    utilisation cap binds) nothing moves."""
    top = np.maximum(slots, 1).astype(float)
    return _chord_fixed_point(lam_inst_ms, b0, step0_ms, b_util, step_util_ms, e_pre_ms, e_out, top)


def settled_batch(profile: Profile, lam_inst_ms: np.ndarray, slots: np.ndarray, b_util: np.ndarray,
                  step_ms: np.ndarray, step_util_ms: np.ndarray, e_pre_ms: np.ndarray, e_out: np.ndarray,
                  mean_kv: np.ndarray, pf_per_seq: np.ndarray, pf_ctx: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean batch b*, mean slot time E[S(b*)] (ms) and per-GPU power (W) of pools at
    ``lam_inst_ms`` requests per ms per instance: ``mean_batch``; where b* lies more than 5 %
    below b_u the chord was an extrapolation, so one secant step with the step evaluated at
    b* (``refine_mean_batch``; nearer b_u the chord holds); then the power at max(b*, 1)
    (prefill of ``pf_per_seq`` prompt tokens per sequence mixed in as whole prompts), below one
    sequence idle + b* (P(1) - idle): the instance idles part of the time."""
    batch, es = mean_batch(lam_inst_ms, slots, b_util, step_ms, step_util_ms, e_pre_ms, e_out)
    far = np.flatnonzero((batch < 0.95 * b_util) & (e_out > 0))
    if far.size:
        bf = np.maximum(batch[far], 1.0)
        st = profile.operating_point(bf, mean_kv[far], bf * pf_per_seq[far], pf_ctx[far], decode=False,
                                     whole_prompts=True).step_ms
        batch[far], es[far] = refine_mean_batch(lam_inst_ms[far], slots[far], bf, np.asarray(st, float) + 0 * bf,
                                                b_util[far], step_util_ms[far], e_pre_ms[far], e_out[far])
    b1 = np.maximum(batch, 1.0)
    p_op = np.asarray(profile.operating_point(b1, mean_kv, b1 * pf_per_seq, pf_ctx, decode=False,
                                              whole_prompts=True).power_per_gpu_w, float)
    idle = profile.idle_power_w()
    return batch, es, np.where(batch < 1.0, idle + batch * (p_op - idle), p_op)


def cap_points(profile: Profile, slots: np.ndarray, step_ms: np.ndarray, mean_kv: np.ndarray,
               pf_per_seq: np.ndarray, pf_ctx: np.ndarray, max_utilization: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two batches sizing reads the physics at, in one call (one entry per pool):

        b_u    = max(max_utilization x slots, 1)         (the utilisation cap's batch)
        step_u = min(step(b_u), step(slots))            (steps follow the batch: chunked
                 prefill; the paper's fixed service times keep step(slots))
        P_peak = per-GPU power at the slot cap           (the ``peak`` provisioning basis)

    ``step_ms`` is the step at the slot cap (``tpot_batch_cap``)."""
    sl = np.maximum(slots, 1).astype(float)
    b_util = np.maximum(max_utilization * sl, 1.0)
    two = 2 if profile.chunked_prefill else 1
    bb = np.concatenate([sl, b_util][:two])
    op = profile.operating_point(bb, np.tile(mean_kv, two), bb * np.tile(pf_per_seq, two), np.tile(pf_ctx, two),
                                 decode=False, whole_prompts=True)
    peak_w = (np.asarray(op.power_per_gpu_w, float) * np.ones(bb.size))[:sl.size]
    step_util = (np.minimum((np.asarray(op.step_ms, float) * np.ones(bb.size))[sl.size:], step_ms) if two == 2
                 else np.array(step_ms, float))
    return b_util, step_util, peak_w
