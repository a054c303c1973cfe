"""The fleet MILP against brute force, post-solve invariants, baselines, diagnoses, CLI."""

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetopt import InfeasibleError
from fleetopt.cli import main
from fleetopt.fleet import PoolChoice, build_workload, evaluate
from fleetopt.instance import Instance, load_instance, validate_instance
from fleetopt.schema import replace
from fleetopt.solve import solve_instance
from formulations.fleet import FleetModelData, build, solve, solve_direct, write_lp

INST = Path(__file__).resolve().parents[1] / "instances"
GOLDEN = Path(__file__).resolve().parent / "golden"


# --- the formulation alone, on random columns, against enumeration of every path ---------

def within_limits(cols, pick, stock, cap) -> bool:
    """A choice of random columns within the power cap and every GPU type's stock."""
    if cap is not None and sum(cols[k]["p"] for k in pick) > cap + 1e-9:
        return False
    return all(sum(cols[k]["g"] for k in pick if cols[k]["t"] == t) <= s for t, s in stock.items())


def model_data(n_nodes, cols, K, stock, cap, frac=None):
    """The formulation's data and weights for random columns."""
    data = FleetModelData(n_nodes, np.array([c["i"] for c in cols]), np.array([c["j"] for c in cols]),
                          [c["t"] for c in cols], np.array([c["g"] for c in cols]), K, stock,
                          np.array([c["p"] for c in cols], float), cap, frac=frac)
    return data, np.array([c["w"] for c in cols], float)


def brute_force(n_nodes, cols, K, stock, cap):
    """Enumerate every path 0 -> M (subsets of inner nodes) and every column choice per arc."""
    best = math.inf
    inner = list(range(1, n_nodes - 1))
    by_arc = {}
    for k, c in enumerate(cols):
        by_arc.setdefault((c["i"], c["j"]), []).append(k)
    for r in range(0, min(K, n_nodes - 1)):
        for cut in itertools.combinations(inner, r):
            nodes = [0, *cut, n_nodes - 1]
            arcs = list(zip(nodes, nodes[1:]))
            if any(a not in by_arc for a in arcs):
                continue
            for pick in itertools.product(*(by_arc[a] for a in arcs)):
                if within_limits(cols, pick, stock, cap):
                    best = min(best, sum(cols[k]["w"] for k in pick))
    return best


@st.composite
def random_columns(draw):
    n_nodes = draw(st.integers(2, 5))
    types = ["a", "b", "c"][: draw(st.integers(1, 3))]
    cols = []
    for i in range(n_nodes - 1):
        for j in range(i + 1, n_nodes):
            for t in types:
                if draw(st.booleans()) or (i, j) == (0, n_nodes - 1):
                    cols.append({"i": i, "j": j, "t": t, "w": draw(st.integers(1, 60)),
                                 "p": draw(st.integers(1, 40)), "g": draw(st.integers(1, 16))})
    K = draw(st.integers(1, 3))
    stock = {t: draw(st.integers(8, 40)) for t in types if draw(st.booleans())}
    cap = draw(st.one_of(st.none(), st.integers(10, 100)))
    return n_nodes, cols, K, stock, cap


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_columns())
def test_milp_equals_enumeration_on_random_columns(case):
    n_nodes, cols, K, stock, cap = case
    data, w = model_data(n_nodes, cols, K, stock, cap)
    res = solve(build(data, w), 30, 0.0, 1, 0)
    direct = solve_direct(data, w, "min", 30, 0.0, 1, 0)
    assert direct.status == res.status and direct.objective == res.objective    # both transports agree
    pre = solve_direct(data, w, "min", 30, 0.0, 1, 0, presolve=True)
    assert pre.status == res.status and pre.objective == res.objective          # presolve changes no optimum
    bf = brute_force(n_nodes, cols, K, stock, cap)
    if math.isinf(bf):
        assert res.status == "infeasible"
    else:
        assert res.status == "optimal"
        assert res.objective == pytest.approx(bf)
        chosen = [cols[k] for k in res.chosen]            # a path, within every limit
        assert sorted((c["i"], c["j"]) for c in chosen)[0][0] == 0
        assert len(chosen) <= K


# --- real instances: solve == enumeration of partitions x configs through `evaluate` -----

def tiny_instance(seed: int, K: int, cap_mw=None, stock=None) -> Instance:
    rng = np.random.default_rng(seed)
    gpus = [{"id": "h100", "tp": [4, 8]}, {"id": "h200", "tp": [8]}]
    if stock:
        gpus[0]["max_gpus"] = stock
    return validate_instance({
        "name": f"tiny-{seed}", "mode": "physical", "model": "llama-3.1-70b", "gpus": gpus,
        "workload": {"distribution": {"type": "lognormal", "input_median": float(rng.uniform(300, 1500)),
                                      "input_sigma": 1.0, "output_median": float(rng.uniform(100, 400)),
                                      "output_sigma": 0.8, "max_tokens": 16384},
                     "arrival_rate": float(rng.uniform(20, 120))},
        "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 80},
        "power": {"pue": 1.2, "host_w_per_node": 1000, "facility_cap_mw": cap_mw, "provisioning": "expected"},
        "pools": {"max_pools": K, "boundaries": [1024, 2048, 4096, 16384], "admission": ["paged"]},
    })


def enumerate_plans(inst: Instance, dist_rate):
    """Every partition of the candidate boundaries into <= K pools x every config per pool,
    each sized by `evaluate`; returns the least-energy plan meeting cap and inventory."""
    inner, top = [1024, 2048, 4096], 16384
    cfgs = [("h100-sxm", 4), ("h100-sxm", 8), ("h200", 8)]
    best = (math.inf, None)
    for r in range(inst.pools.max_pools):
        for cut in itertools.combinations(inner, r):
            uppers = [*cut, top]
            for pick in itertools.product(cfgs, repeat=len(uppers)):
                topo = [PoolChoice(u, g, tp) for u, (g, tp) in zip(uppers, pick)]
                try:
                    res = evaluate(inst, Path("."), topo, workload=dist_rate)
                except InfeasibleError:
                    continue
                f = res["fleet"]
                if inst.power.facility_cap_mw and f["facility_power_kw"] > inst.power.facility_cap_mw * 1e3:
                    continue
                lim = inst.gpus[0].max_gpus
                if lim is not None and sum(p["gpus"] for p in res["pools"] if p["gpu"] == "h100-sxm") > lim:
                    continue
                if f["it_power_kw"] < best[0] - 1e-9:
                    best = (f["it_power_kw"], topo)
    return best


@pytest.mark.parametrize("seed,K,cap,stock", [(1, 1, None, None), (2, 2, None, None), (3, 3, None, None),
                                              (4, 3, None, 24), (5, 2, 0.05, None)])
def test_solve_equals_enumeration_through_evaluate(seed, K, cap, stock):
    inst = tiny_instance(seed, K, cap, stock)
    dr = build_workload(inst, Path("."))
    best_kw, _ = enumerate_plans(inst, dr)
    if math.isinf(best_kw):
        with pytest.raises(InfeasibleError):
            solve_instance(inst, Path("."))
        return
    res = solve_instance(inst, Path("."))
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["it_power_kw"] == pytest.approx(best_kw, rel=1e-6)     # within the proven gap


def test_post_solve_invariants_and_columns_agree_with_evaluate():
    inst, base = load_instance(INST / "heterogeneous.yaml", ["power.facility_cap_mw=0.2",
                                                             "gpus.1.max_gpus=64"])
    res = solve_instance(inst, base)
    pools = res["pools"]
    assert pools[0]["lo_tokens"] == 0 and pools[-1]["hi_tokens"] == res["search_space"]["boundaries"][-1]
    assert all(a["hi_tokens"] == b["lo_tokens"] for a, b in zip(pools, pools[1:]))   # served once
    assert sum(p["arrival_rate"] for p in pools) == pytest.approx(300)
    assert res["fleet"]["peak_it_power_kw"] * 1.2 <= 200 + 1e-6                       # peak basis, PUE 1.2
    assert sum(p["gpus"] for p in pools if p["gpu"] == "h100-sxm") <= 64
    assert all(p["ttft_p99_ms"] <= 1500 and p["tpot_p99_ms"] <= 60 for p in pools)
    assert len(pools) <= 3
    # the MILP objective is the re-evaluated plan's energy: columns and evaluate agree
    assert res["solver"]["objective"] == pytest.approx(res["fleet"]["it_power_kw"] * 1e3, rel=1e-9)


@pytest.mark.parametrize("name,sets", [("heterogeneous", ["power.facility_cap_mw=0.2", "gpus.1.max_gpus=64"]),
                                       ("paper-azure-h100", []), ("longctx-summarization", [])])
def test_reported_plan_and_baselines_equal_a_fresh_evaluate(name, sets):
    """solve reads its plan's and baselines' pools from the sized columns; a fresh
    `evaluate` of the same topologies (routing and sizing again) gives the same figures."""
    from fleetopt.fleet import parse_topology

    inst, base = load_instance(INST / f"{name}.yaml", sets)
    res = solve_instance(inst, base)
    for topo, fleet, pools in [(res["topology"], res["fleet"], res["pools"])] + [
            (b["topology"], b, None) for b in res["baselines"].values() if b is not None]:
        fresh = evaluate(inst, base, parse_topology(topo))
        assert fresh["fleet"] == pytest.approx({k: v for k, v in fleet.items() if k in fresh["fleet"]}, rel=1e-12)
        if pools is not None:
            assert fresh["pools"] == pools


def test_pyomo_and_highspy_interfaces_give_the_same_plan():
    a = solve_instance(*load_instance(INST / "heterogeneous.yaml", ["solver.interface=pyomo"]))
    b = solve_instance(*load_instance(INST / "heterogeneous.yaml"))
    assert a["topology"] == b["topology"] and a["solver"]["objective"] == pytest.approx(b["solver"]["objective"])


def test_k1_is_the_best_homogeneous_fleet():
    inst, base = load_instance(INST / "heterogeneous.yaml", ["pools.max_pools=1"])
    res = solve_instance(inst, base)
    assert len(res["pools"]) == 1
    assert res["fleet"]["tokens_per_joule"] == pytest.approx(res["baselines"]["homogeneous"]["tokens_per_joule"])


def test_paper_instance_beats_both_baselines():
    inst, base = load_instance(INST / "paper-azure-h100.yaml")
    res = solve_instance(inst, base)
    assert res["solver"]["status"] == "optimal" and res["solver"]["gap"] <= 1e-6
    f, b = res["fleet"], res["baselines"]
    assert f["tokens_per_joule"] >= b["two_pool_paper"]["tokens_per_joule"]
    assert f["tokens_per_joule"] >= b["homogeneous"]["tokens_per_joule"]
    assert b["two_pool_paper"]["instances"] == 68 and b["homogeneous"]["instances"] == 141   # Table 3


def test_min_cost_objective_minimises_cost():
    inst, base = load_instance(INST / "heterogeneous.yaml", ["objective=min_cost"])
    res = solve_instance(inst, base)
    assert res["fleet"]["cost_per_hour"] <= res["baselines"]["homogeneous"]["cost_per_hour"] + 1e-9


def test_compress_ratio_by_dinkelbach_is_at_least_min_energy_ratio():
    sets = ["pools.compress.gamma=2", "pools.compress.accounting=consistent"]
    inst, base = load_instance(INST / "azure-conv-h100.yaml", sets)
    res = solve_instance(inst, base)
    assert res["solver"]["dinkelbach_iterations"] >= 1
    assert res["solver"]["objective"] == pytest.approx(res["fleet"]["tokens_per_joule"], rel=1e-6)


def test_power_cap_ladder_and_diagnosis(capsys):
    assert main(["solve", str(INST / "datacenter-20mw.yaml"), "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["solver"]["status"] == "optimal" and res["fleet"]["within_power_cap"]
    assert main(["solve", str(INST / "datacenter-20mw.yaml"), "--set", "power.facility_cap_mw=2"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("fleetopt: infeasible: power cap short by") and "\n" not in err


def test_max_throughput_fills_the_cap():
    inst, base = load_instance(INST / "datacenter-20mw.yaml", ["objective=max_throughput",
                                                               "power.facility_cap_mw=5"])
    res = solve_instance(inst, base)
    t = res["throughput"]
    assert t["relative_gap"] <= 1e-3 and res["fleet"]["facility_power_kw"] <= 5000
    over, b2 = load_instance(INST / "datacenter-20mw.yaml", ["power.facility_cap_mw=5",
                                                            f"workload.arrival_rate={t['arrival_rate'] * 1.002}"])
    with pytest.raises(InfeasibleError):
        solve_instance(over, b2)


def test_max_throughput_needs_a_cap(capsys):
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--set", "objective=max_throughput"]) == 2
    assert "facility_cap_mw" in capsys.readouterr().err


def test_out_writes_three_files_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(["solve", str(INST / "paper-azure-h100.yaml"), "--out", str(out), "--format", "json"]) == 0
    assert {p.name for p in out.iterdir()} == {"plan.json", "pools.csv", "plan.md"}
    before = (out / "plan.json").read_text()
    assert json.loads(before)["solver"]["status"] == "optimal"
    assert main(["solve", str(INST / "paper-azure-h100.yaml"), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["solve", str(INST / "paper-azure-h100.yaml"), "--out", str(out), "--force"]) == 0


def test_golden_lp_has_every_constraint_family(tmp_path):
    """A two-node-pair toy model written as LP, compared with tests/golden/fleet_tiny.lp."""
    data = FleetModelData(3, np.array([0, 0, 1, 0]), np.array([1, 2, 2, 2]), ["a", "b", "a", "a"],
                          np.array([8, 8, 8, 16]), 2, {"a": 16}, np.array([5.0, 9.0, 4.0, 7.0]), 10.0)
    m = build(data, np.array([3.0, 8.0, 4.0, 6.0]))
    path = tmp_path / "tiny.lp"
    write_lp(m, str(path))
    text = path.read_text()
    for family in ("flow", "pools", "stock", "power"):
        assert family in text
    assert text == (GOLDEN / "fleet_tiny.lp").read_text()


def test_time_limit_without_incumbent_is_one_line_exit_3(capsys):
    assert main(["solve", str(INST / "heterogeneous.yaml"), "--set", "solver.time_limit_s=0.0001"]) == 3
    err = capsys.readouterr().err.strip()
    assert "time limit" in err and "\n" not in err


def test_ties_go_to_the_simplest_plan():
    """The tie-break returns the fewest pools among plans within the proven gap: on the
    heterogeneous instance, every plan with fewer pools than the one returned is worse than
    the optimum by more than the gap (checked by solving with max_pools limited)."""
    inst, base = load_instance(INST / "heterogeneous.yaml")
    res = solve_instance(inst, base)
    gap = res["solver"]["gap"]
    assert gap <= 1e-6
    best = res["fleet"]["it_power_kw"]
    for k in range(1, len(res["pools"])):
        fewer = solve_instance(replace(inst, pools=replace(inst.pools, max_pools=k)), base)
        assert fewer["fleet"]["it_power_kw"] > best * (1 + gap) + 1e-9


def _columns(workers: int):
    from fleetopt.catalog import load_catalog
    from fleetopt.columns import generate

    inst, base = load_instance(INST / "heterogeneous.yaml")
    dist, rate = build_workload(inst, base)
    return generate(inst, dist, rate, load_catalog(), workers=workers)


def _same_columns(a, b):
    assert len(a) == len(b) > 0
    for f in ("arc_i", "arc_j", "cfg", "instances", "gpus", "energy_w", "provisioned_w", "tokens_s", "cost_h"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.errors == b.errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="parallel sizing forks")
def test_parallel_sizing_equals_serial():
    _same_columns(_columns(1), _columns(2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="parallel sizing forks")
def test_a_failing_worker_leaves_its_configs_to_the_parent(monkeypatch):
    """A forked worker that fails (here: every config it takes raises) sends nothing; the
    parent sizes the configs it had taken, and the columns are complete and equal."""
    import fleetopt.columns as C

    parent, real = os.getpid(), C._shape_job

    def flaky(c):
        if os.getpid() != parent:
            raise RuntimeError("worker lost")
        return real(c)
    serial = _columns(1)
    monkeypatch.setattr(C, "_shape_job", flaky)
    _same_columns(serial, _columns(3))


# --- mixed pools (pools.split_grid): the MILP over shares == enumeration through evaluate ---

def enumerate_mixed_plans(inst: Instance, dist_rate, inner: list[int], top: int):
    """Every partition x every way to serve each range with one config (share 1) or two
    members at 1/2 each (a config may repeat), each sized by `evaluate`; the least-energy
    plan meeting the inventory."""
    cfgs = [("h100-sxm", 4), ("h100-sxm", 8), ("h200", 8)]
    options = [[(c, 1.0)] for c in cfgs] + [[(a, 0.5), (b, 0.5)] for a, b in
                                            itertools.combinations_with_replacement(cfgs, 2)]
    best = (math.inf, None)
    for r in range(inst.pools.max_pools):
        for cut in itertools.combinations(inner, r):
            uppers = [*cut, top]
            for pick in itertools.product(options, repeat=len(uppers)):
                topo = [PoolChoice(u, g, tp, share=sh) for u, members in zip(uppers, pick) for (g, tp), sh in members]
                try:
                    res = evaluate(inst, Path("."), topo, workload=dist_rate)
                except InfeasibleError:
                    continue
                lim = inst.gpus[0].max_gpus
                if lim is not None and sum(p["gpus"] for p in res["pools"] if p["gpu"] == "h100-sxm") > lim:
                    continue
                if res["fleet"]["it_power_kw"] < best[0] - 1e-9:
                    best = (res["fleet"]["it_power_kw"], topo)
    return best


@pytest.mark.parametrize("seed,K,stock", [(11, 1, 16), (12, 2, 24), (13, 2, None), (14, 1, 8), (13, 1, 92),
                                          (13, 2, 92)])
def test_mixed_pools_equal_enumeration_through_evaluate(seed, K, stock):
    inst = tiny_instance(seed, K, None, stock)
    inst = replace(inst, pools=replace(inst.pools, boundaries=[2048, 16384], split_grid=2))
    dr = build_workload(inst, Path("."))
    best_kw, topo = enumerate_mixed_plans(inst, dr, [2048], 16384)
    if math.isinf(best_kw):
        with pytest.raises(InfeasibleError):
            solve_instance(inst, Path("."))
        return
    res = solve_instance(inst, Path("."))
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["it_power_kw"] == pytest.approx(best_kw, rel=1e-6)
    if (K, stock) == (1, 92):                         # this case's optimum is a mixed range
        assert any(p.share < 1 for p in topo) and "@" in res["topology"]
    # and what solve reports for its (possibly mixed) plan is what evaluate gives for it
    from fleetopt.fleet import parse_topology
    fresh = evaluate(inst, Path("."), parse_topology(res["topology"]), workload=dr)
    assert fresh["pools"] == res["pools"]


def test_a_stock_limit_makes_the_mixed_plan_strictly_better():
    """With H100s (the most efficient config here: 96 GPUs unlimited) limited to 92, one config per range
    must fall back to H200; a mixed range keeps as many H100s as it may and uses less
    energy, and a finer grid (which contains the coarser one) is never worse."""
    inst = tiny_instance(13, 1, None, 92)
    plans = {m: solve_instance(replace(inst, pools=replace(inst.pools, split_grid=m)), Path(".")) for m in (1, 2, 4)}
    kw = {m: r["fleet"]["it_power_kw"] for m, r in plans.items()}
    assert "@" not in plans[1]["topology"] and "@" in plans[4]["topology"]
    assert kw[4] <= kw[2] * (1 + 1e-9) and kw[2] < kw[1]
    mixed = plans[4]
    assert sum(p["gpus"] for p in mixed["pools"] if p["gpu"] == "h100-sxm") <= 92
    shares = {}
    for p in mixed["pools"]:
        shares[p["hi_tokens"]] = shares.get(p["hi_tokens"], 0.0) + p["split"]
    assert all(v == pytest.approx(1.0) for v in shares.values())
    assert sum(p["arrival_rate"] for p in mixed["pools"]) == pytest.approx(inst.workload.arrival_rate)


def test_mixed_pools_with_compression_is_one_line_exit_2(capsys):
    code = main(["solve", str(INST / "paper-azure-h100.yaml"), "--set", "pools.split_grid=2",
                 "--set", "pools.compress.gamma=2"])
    err = capsys.readouterr().err
    assert code == 2 and "pools.split_grid" in err and len(err.strip().splitlines()) == 1


# --- mixed formulation and bound elimination, on random columns, against enumeration -----

@st.composite
def random_mixed_columns(draw):
    n_nodes = draw(st.integers(2, 4))
    cols = []
    for i in range(n_nodes - 1):
        for j in range(i + 1, n_nodes):
            for t in ("a", "b"):
                for k in (1, 2):             # share k/2
                    if draw(st.booleans()) or (i, j, k) == (0, n_nodes - 1, 2):
                        cols.append({"i": i, "j": j, "t": t, "k": k, "w": draw(st.integers(1, 60)),
                                     "p": draw(st.integers(1, 40)), "g": draw(st.integers(1, 16))})
    K = draw(st.integers(1, 3))
    stock = {t: draw(st.integers(8, 40)) for t in ("a", "b") if draw(st.booleans())}
    cap = draw(st.one_of(st.none(), st.integers(10, 100)))
    return n_nodes, cols, K, stock, cap


def mixed_plans(n_nodes, cols, K):
    """Every plan: a path of <= K arcs, each arc covered by one whole column or two
    distinct half columns."""
    by_arc = {}
    for n, c in enumerate(cols):
        by_arc.setdefault((c["i"], c["j"]), []).append(n)
    for r in range(0, min(K, n_nodes - 1)):
        for cut in itertools.combinations(range(1, n_nodes - 1), r):
            nodes = [0, *cut, n_nodes - 1]
            covers = []
            for a in zip(nodes, nodes[1:]):
                cs = by_arc.get(a, [])
                covers.append([(n,) for n in cs if cols[n]["k"] == 2]
                              + list(itertools.combinations([n for n in cs if cols[n]["k"] == 1], 2)))
            for pick in itertools.product(*covers):
                yield [n for cover in pick for n in cover]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_mixed_columns())
def test_mixed_milp_equals_enumeration_on_random_columns(case):
    n_nodes, cols, K, stock, cap = case
    data, w = model_data(n_nodes, cols, K, stock, cap, frac=np.array([c["k"] / 2 for c in cols]))
    best = math.inf
    for plan in mixed_plans(n_nodes, cols, K):
        if within_limits(cols, plan, stock, cap):
            best = min(best, sum(cols[n]["w"] for n in plan))
    direct = solve_direct(data, w, "min", 30, 0.0, 1, 0)
    res = solve(build(data, w), 30, 0.0, 1, 0)
    assert direct.status == res.status and direct.objective == res.objective
    if math.isinf(best):
        assert direct.status == "infeasible"
    else:
        assert direct.status == "optimal" and direct.objective == pytest.approx(best)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_mixed_columns(), st.integers(1, 150))
def test_bound_elimination_keeps_every_plan_within_the_limit(case, limit):
    """No column of any plan (any number of pools, limits ignored) of weight <= limit is
    eliminated, and every kept column's bound is what elimination promises."""
    from types import SimpleNamespace

    from fleetopt.solve import _can_reach

    n_nodes, cols, _, _, _ = case
    view = SimpleNamespace(bounds=list(range(1, n_nodes)), arc_i=np.array([c["i"] for c in cols]),
                           arc_j=np.array([c["j"] for c in cols]), frac=np.array([c["k"] / 2 for c in cols]))
    w = np.array([c["w"] for c in cols], float)
    keep = _can_reach(view, w, float(limit))
    for plan in mixed_plans(n_nodes, cols, n_nodes):
        if sum(w[n] for n in plan) <= limit:
            assert all(keep[n] for n in plan)
