"""The sizing layer's integer searches against brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetopt.batching import search_rising, tpot_batch_cap
from fleetopt.profiles import make_profile


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 3000), st.floats(0.01, 5), st.floats(0, 3), st.floats(1.0, 3.0),
                          st.floats(0.0, 1.0)), min_size=1, max_size=12))
def test_search_rising_is_the_largest_fitting_integer(cases):
    """Rising functions (affine, convex, with jumps of curvature): the search returns the
    largest n in [1, hi) with f(n) <= target, as a scan of every n does."""
    hi = np.array([c[0] for c in cases])
    a, b, e, q = (np.array([c[k] for c in cases]) for k in (1, 2, 3, 4))

    def f(n, i):
        n = np.asarray(n, float)
        return a[i] * n ** e[i] / 100 + b[i] * n + 1.0

    target = f(1 + q * (hi - 1), np.arange(len(cases))) * 0.999
    idx = np.arange(len(cases))
    ok = (f(np.ones(len(cases)), idx) <= target) & (f(hi, idx) > target)
    idx = idx[ok]
    if not idx.size:
        return
    n, v = search_rising(lambda m, i: f(m, idx[i]) - target[idx[i]], 0.0, np.ones(idx.size), hi[idx],
                          f(np.ones(idx.size), idx) - target[idx], f(hi[idx], idx) - target[idx])
    for k, j in enumerate(idx):
        ns = np.arange(1, hi[j])
        want = ns[f(ns, np.full(ns.size, j)) <= target[j]].max()
        assert n[k] == want
        assert v[k] == pytest.approx(f(want, j) - target[j], abs=1e-9)


@pytest.mark.parametrize("gpu,tp,cap_w", [("h100", 8, None), ("b200", 4, None), ("h100", 8, 450)])
def test_tpot_batch_cap_equals_a_scan(gpu, tp, cap_w):
    """The TPOT-capped batch (with DVFS under the power cap) is the largest batch whose
    mean step, scanned over every batch size, is within the target."""
    prof = make_profile("physical", "llama-3.1-70b", gpu, tp, power_cap_w=cap_w)
    kv_slots = np.array([64, 400, 900])
    mean_kv, pf_per, pf_ctx = np.array([3000.0, 1500.0, 800.0]), np.array([2.0, 4.0, 0.5]), np.array([800.0, 500.0, 300.0])
    tpot = 45.0
    slots, step = tpot_batch_cap(prof, kv_slots, mean_kv, pf_per, pf_ctx, tpot)
    for k in range(3):
        b = np.arange(1, kv_slots[k] + 1, dtype=float)
        s = prof.operating_point(b, np.full(b.size, mean_kv[k]), b * pf_per[k], np.full(b.size, pf_ctx[k]),
                                 decode=False).step_ms
        fits = np.flatnonzero(s <= tpot)
        want = int(b[fits.max()]) if fits.size else 0
        assert slots[k] == want
        if want:
            assert step[k] == pytest.approx(s[want - 1], rel=1e-6)   # the clock is solved to 1 mW of power


@pytest.mark.parametrize("name,gpu,tp", [("azure-conv-h100", "h100-sxm", 8), ("azure-code", "b200", 4),
                                         ("moe-qwen3-235b", "b200", 4)])
def test_instances_and_mean_batch_from_the_fixed_point(name, gpu, tp):
    """Steps follow the batch running: the mean batch b* satisfies Little's law with the step
    at b* (b = lambda_inst (E[pre] + step(b) E[out]), the step evaluated here directly by the
    physics, not by the sizing's affine interpolation); b* stays within the utilisation cap;
    and where the cap binds, one instance fewer would need b_u = max_utilization x slots to
    exceed lambda_inst E[S(b_u)], recomputed here from the traffic's points."""
    from pathlib import Path

    from fleetopt import load_instance
    from fleetopt.problem import Problem
    from fleetopt.routing import Router
    from fleetopt.sizing import size_pool

    inst = load_instance(Path(__file__).resolve().parents[1] / "instances" / f"{name}.yaml")
    problem = Problem.from_instance(inst)
    prof = problem.profile(gpu, tp)
    [(t, window)] = Router(problem.dist).route([16384])
    rate = inst.workload.arrival_rate
    p = size_pool(prof, t, rate, 0, 16384, window, problem.slo, "paged")
    w = t.w / t.w.sum()
    e_out, e_in = float(w @ t.out), float(w @ t.inp)
    e_pre = float(w @ np.asarray(prof.prefill_ms(t.inp), float))
    mean_kv = float(w @ (t.out * (t.inp + t.out / 2))) / e_out
    pf_per, pf_ctx = e_in / e_out, e_in / 2

    def step(b):
        return float(prof.operating_point(b, mean_kv, b * pf_per, pf_ctx, decode=False, whole_prompts=True).step_ms)

    lam = p.arrival_rate / 1e3                                   # requests per ms
    b = p.batch
    assert b == pytest.approx(lam / p.instances * p.mean_service_ms, rel=1e-9)          # Little's law
    assert b == pytest.approx(lam / p.instances * (e_pre + step(b) * e_out), rel=0.03)   # with the true step
    b_u = problem.slo.max_utilization * p.slots
    assert b <= b_u * (1 + 1e-9) and p.utilization == pytest.approx(b / p.slots)
    if p.binding[0] == "utilization":                            # the least count under the cap
        s_u = e_pre + step(b_u) * e_out
        assert lam / p.instances * s_u <= b_u * (1 + 1e-9)
        assert lam / (p.instances - 1) * s_u > b_u
