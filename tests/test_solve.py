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

from fleetopt import InfeasibleError, evaluate, load_instance, solve
from fleetopt.cli import main
from fleetopt.instance import Instance
from fleetopt.loading import validate_instance
from fleetopt.problem import Problem
from fleetopt.records import replace
from fleetopt.topology import PoolChoice
from formulations import fleet
from formulations import get as formulation
from formulations.fleet import FleetModelData
from formulations.highs import solve_matrix, solve_pyomo, write_lp

INST = Path(__file__).resolve().parents[1] / "instances"
GOLDEN = Path(__file__).resolve().parent / "golden"


# --- the formulation alone, on random columns, against enumeration of every path ---------

def within_limits(cols, pick, stock, cap) -> bool:
    """A choice of random columns within the power cap and every GPU type's stock."""
    if cap is not None and sum(cols[k]["p"] for k in pick) > cap + 1e-9:
        return False
    return all(sum(cols[k]["g"] for k in pick if cols[k]["t"] == t) <= s for t, s in stock.items())


def direct(data, w, presolve=False):
    """The formulation's rows (``fleet`` or ``fleet_mixed``) through highspy, no time limit to speak of."""
    form = formulation("fleet_mixed" if data.mixed else "fleet")
    return solve_matrix(form.constraint_rows(data), data.n_vars(), w, "min", 30, 0.0, 1, 0, presolve=presolve)


def via_pyomo(data, w):
    """The formulation's Pyomo model through pyomo.contrib.solver.solvers.highs.Highs."""
    form = formulation("fleet_mixed" if data.mixed else "fleet")
    return solve_pyomo(form.build(data, w), 30, 0.0, 1, 0)


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
    res = via_pyomo(data, w)
    by_matrix = direct(data, w)
    assert by_matrix.status == res.status and by_matrix.objective == res.objective    # both transports agree
    pre = direct(data, w, presolve=True)
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

def tiny_instance(seed: int, K: int, cap_mw=None, stock=None, stock_h200=None) -> Instance:
    rng = np.random.default_rng(seed)
    gpus = [{"id": "h100", "tp": [4, 8]}, {"id": "h200", "tp": [8]}]
    if stock:
        gpus[0]["max_gpus"] = stock
    if stock_h200:
        gpus[1]["max_gpus"] = stock_h200
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
                    res = evaluate(dist_rate, topo).to_dict()
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
    dr = Problem.from_instance(inst)
    best_kw, _ = enumerate_plans(inst, dr)
    if math.isinf(best_kw):
        with pytest.raises(InfeasibleError):
            solve(inst).to_dict()
        return
    res = solve(inst).to_dict()
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["it_power_kw"] == pytest.approx(best_kw, rel=1e-6)     # within the proven gap


def test_post_solve_invariants_and_columns_agree_with_evaluate():
    inst = load_instance(INST / "heterogeneous.yaml", ["power.facility_cap_mw=0.2",
                                                             "gpus.1.max_gpus=64"])
    res = solve(inst).to_dict()
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


def assert_same_pools(fresh: list[dict], reported: list[dict]) -> None:
    """The same pool rows up to float rounding (columns are sized vectorised over other pools)."""
    assert len(fresh) == len(reported)
    for f, p in zip(fresh, reported):
        assert f.keys() == p.keys()
        for k in f:
            assert f[k] == (pytest.approx(p[k], rel=1e-12) if isinstance(p[k], float) else p[k]), k


@pytest.mark.parametrize("name,sets", [("heterogeneous", ["power.facility_cap_mw=0.2", "gpus.1.max_gpus=64"]),
                                       ("paper-azure-h100", []), ("longctx-summarization", [])])
def test_reported_plan_and_baselines_equal_a_fresh_evaluate(name, sets):
    """solve reads its plan's and baselines' pools from the sized columns; a fresh
    `evaluate` of the same topologies (routing and sizing again) gives the same figures."""
    from fleetopt.topology import parse_topology

    inst = load_instance(INST / f"{name}.yaml", sets)
    res = solve(inst).to_dict()
    for topo, totals, pools in [(res["topology"], res["fleet"], res["pools"])] + [
            (b["topology"], b, None) for b in res["baselines"].values() if b is not None]:
        fresh = evaluate(inst, parse_topology(topo)).to_dict()
        assert fresh["fleet"] == pytest.approx({k: v for k, v in totals.items() if k in fresh["fleet"]}, rel=1e-12)
        if pools is not None:
            assert_same_pools(fresh["pools"], pools)


def test_pyomo_and_highspy_interfaces_give_the_same_plan():
    a = solve(load_instance(INST / "heterogeneous.yaml", ["solver.interface=pyomo"])).to_dict()
    b = solve(load_instance(INST / "heterogeneous.yaml")).to_dict()
    assert a["topology"] == b["topology"] and a["solver"]["objective"] == pytest.approx(b["solver"]["objective"])


def test_k1_is_the_best_homogeneous_fleet():
    inst = load_instance(INST / "heterogeneous.yaml", ["pools.max_pools=1"])
    res = solve(inst).to_dict()
    assert len(res["pools"]) == 1
    assert res["fleet"]["tokens_per_joule"] == pytest.approx(res["baselines"]["homogeneous"]["tokens_per_joule"])


def test_paper_instance_beats_both_baselines():
    inst = load_instance(INST / "paper-azure-h100.yaml")
    res = solve(inst).to_dict()
    assert res["solver"]["status"] == "optimal" and res["solver"]["gap"] <= 1e-6
    f, b = res["fleet"], res["baselines"]
    assert f["tokens_per_joule"] >= b["two_pool_paper"]["tokens_per_joule"]
    assert f["tokens_per_joule"] >= b["homogeneous"]["tokens_per_joule"]
    assert b["two_pool_paper"]["instances"] == 68 and b["homogeneous"]["instances"] == 141   # Table 3


def test_min_cost_objective_minimises_cost():
    inst = load_instance(INST / "heterogeneous.yaml", ["objective=min_cost"])
    res = solve(inst).to_dict()
    assert res["fleet"]["cost_per_hour"] <= res["baselines"]["homogeneous"]["cost_per_hour"] + 1e-9


def test_consistent_compression_credits_the_same_tokens_on_every_plan():
    """With consistent accounting every request's output is credited once, whatever the
    plan, so max tokens/J is min energy (no Dinkelbach): checked on plans evaluated afresh."""
    from fleetopt.topology import parse_topology

    sets = ["pools.compress.gamma=2", "pools.compress.accounting=consistent"]
    inst = load_instance(INST / "azure-conv-h100.yaml", sets)
    res = solve(inst).to_dict()
    assert res["solver"]["dinkelbach_iterations"] == 0
    tok = {evaluate(inst, parse_topology(t)).to_dict()["fleet"]["tokens_per_s"]
           for t in ("16384:h100x8", "2048:h100x8,16384:h100x8", "1024:b200x4,4096:h100x8,16384:b200x4")}
    assert max(tok) == pytest.approx(min(tok), rel=1e-9)
    assert res["fleet"]["tokens_per_s"] == pytest.approx(min(tok), rel=1e-9)


def enumerate_paper_plans(inst, gpus):
    """Every plan of <= 2 pools over the candidate boundaries x every GPU per pool, each
    evaluated afresh; the best tokens per joule (IT power, every GPU charged)."""
    dr = Problem.from_instance(inst)
    inner, top = [1024, 2048, 4096, 8192, 16384], 65536
    best = (0.0, None)
    for r in range(2):
        for cut in itertools.combinations(inner, r):
            for pick in itertools.product(gpus, repeat=r + 1):
                topo = [PoolChoice(u, g, 8) for u, g in zip([*cut, top], pick)]
                f = evaluate(dr, topo).to_dict()["fleet"]
                if f["tokens_per_joule"] > best[0]:
                    best = (f["tokens_per_joule"], ",".join(p.spec() for p in topo))
    return best


@pytest.mark.parametrize("name,gpus,issue_tpj", [
    ("paper-azure-h100", ["h100-sxm"], 1.2014),            # the issue's three reproductions
    ("paper-azure-h100", ["h100-sxm", "b200"], 2.0504),
    ("paper-azure-b200", ["b200"], 2.0370)])
def test_paper_mode_maximises_the_tokens_per_joule_it_reports(name, gpus, issue_tpj):
    """In paper mode a long pool's sub-CDF starts at 0 tokens, so credited tokens/s depend
    on the split and least energy is not most tokens per joule: the plan must be the best
    of an enumeration through `evaluate`."""
    sets = ["pools.boundaries=[1024,2048,4096,8192,16384,65536]", "pools.max_pools=2",
            "gpus=[" + ",".join(f"{{id: {g}, tp: [8]}}" for g in gpus) + "]"]
    inst = load_instance(INST / f"{name}.yaml", sets)
    best, topo = enumerate_paper_plans(inst, gpus)
    res = solve(inst).to_dict()
    assert best >= issue_tpj - 5e-5
    assert res["fleet"]["tokens_per_joule"] == pytest.approx(best, rel=1e-9), (res["topology"], topo)
    assert res["solver"]["status"] == "optimal" and res["solver"]["dinkelbach_iterations"] >= 1
    assert res["solver"]["objective"] == pytest.approx(best, rel=1e-9)


def test_power_cap_ladder_and_diagnosis(capsys):
    assert main(["solve", str(INST / "datacenter-20mw.yaml"), "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["solver"]["status"] == "optimal" and res["fleet"]["within_power_cap"]
    assert main(["solve", str(INST / "datacenter-20mw.yaml"), "--set", "power.facility_cap_mw=2"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("fleetopt: infeasible: power cap short by") and "\n" not in err


def test_power_text_units_and_precision():
    from fleetopt.render import power_text

    assert power_text(850.0) == "850.0 W" and power_text(157.26) == "157.3 W"
    assert power_text(12_345.0) == "12.35 kW" and power_text(999_000.0) == "999.0 kW"
    assert power_text(1.6334e6) == "1.633 MW" and power_text(3.2e7) == "32.00 MW"


PAPER_SMALL = ["pools.boundaries=[1024,2048,4096,8192,16384,65536]", "pools.max_pools=3",
               "gpus=[{id: h100-sxm, tp: [8]}, {id: b200, tp: [8]}]"]


def test_a_tiny_power_shortfall_is_shown_in_watts(capsys):
    """A cap 0.1 % under the least-power plan: the message names the shortfall in W, its
    share of the cap, and need and cap with the digits that differ.  The least provisioned
    power is found by enumerating every plan (<= 3 pools x 2 configs) through `evaluate`."""
    import re

    inst = load_instance(INST / "paper-azure-h100.yaml", PAPER_SMALL)
    dr = Problem.from_instance(inst)
    need_kw = math.inf
    inner = [1024, 2048, 4096, 8192, 16384]
    for r in range(3):
        for cut in itertools.combinations(inner, r):
            for pick in itertools.product(["h100-sxm", "b200"], repeat=r + 1):
                topo = [PoolChoice(u, g, 8) for u, g in zip([*cut, 65536], pick)]
                need_kw = min(need_kw, evaluate(dr, topo).to_dict()["fleet"]["provisioned_facility_kw"])
    cap_mw = round(need_kw * 0.999 / 1e3, 6)
    code = main(["solve", str(INST / "paper-azure-h100.yaml"), *[a for s in PAPER_SMALL for a in ("--set", s)],
                 "--set", "objective=min_cost", "--set", f"power.facility_cap_mw={cap_mw}"])
    err = capsys.readouterr().err.strip()
    assert code == 3 and "\n" not in err
    m = re.search(r"short by ([\d.]+) W, ([\d.]+) % of the ([\d.]+) kW cap .* needs ([\d.]+) kW", err)
    assert m, err
    short_w, pct, cap_kw, need_shown = (float(x) for x in m.groups())
    assert short_w == pytest.approx(need_kw * 1e3 - cap_mw * 1e6, rel=1e-3)
    assert pct == pytest.approx(100 * short_w / (cap_mw * 1e6), rel=1e-2)
    assert need_shown == pytest.approx(need_kw, abs=1e-3) and cap_kw == pytest.approx(cap_mw * 1e3, abs=1e-3)
    assert need_shown > cap_kw


def test_max_throughput_fills_the_cap():
    inst = load_instance(INST / "datacenter-20mw.yaml", ["objective=max_throughput",
                                                               "power.facility_cap_mw=5"])
    res = solve(inst).to_dict()
    t = res["throughput"]
    assert t["relative_gap"] <= 1e-3 and res["fleet"]["facility_power_kw"] <= 5000
    over = load_instance(INST / "datacenter-20mw.yaml", ["power.facility_cap_mw=5",
                                                            f"workload.arrival_rate={t['arrival_rate'] * 1.002}"])
    with pytest.raises(InfeasibleError):
        solve(over).to_dict()


def test_max_throughput_needs_a_cap(capsys):
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--set", "objective=max_throughput"]) == 2
    assert "facility_cap_mw" in capsys.readouterr().err


def test_out_writes_the_report_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(["solve", str(INST / "paper-azure-h100.yaml"), "--out", str(out), "--format", "json"]) == 0
    assert {p.name for p in out.iterdir()} >= {"plan.json", "pools.csv", "plan.md", "plan.html"}
    before = (out / "plan.json").read_text()
    assert json.loads(before)["solver"]["status"] == "optimal"
    assert main(["solve", str(INST / "paper-azure-h100.yaml"), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["solve", str(INST / "paper-azure-h100.yaml"), "--out", str(out), "--force"]) == 0


def test_golden_lp_has_every_constraint_family(tmp_path):
    """A two-node-pair toy model written as LP, compared with tests/golden/fleet_tiny.lp."""
    data = FleetModelData(3, np.array([0, 0, 1, 0]), np.array([1, 2, 2, 2]), ["a", "b", "a", "a"],
                          np.array([8, 8, 8, 16]), 2, {"a": 16}, np.array([5.0, 9.0, 4.0, 7.0]), 10.0)
    m = fleet.build(data, np.array([3.0, 8.0, 4.0, 6.0]))
    path = tmp_path / "tiny.lp"
    write_lp(m, str(path))
    text = path.read_text()
    for family in ("flow", "pools", "stock", "power"):
        assert family in text
    assert text == (GOLDEN / "fleet_tiny.lp").read_text()


ONLY_TWO_STOCKED = "gpus=[{id: b200, tp: [2], max_gpus: 40}, {id: gb200, tp: [2], max_gpus: 40}]"


def test_time_limit_without_a_plan_is_its_own_status_exit_4(capsys):
    """No one-pool plan fits the stock here, so only the MILP can find a plan; a limit that
    ends before it runs is "no plan found within the time limit" (exit 4), not infeasible."""
    assert main(["solve", str(INST / "heterogeneous.yaml"), "--set", ONLY_TWO_STOCKED]) == 0
    capsys.readouterr()
    code = main(["solve", str(INST / "heterogeneous.yaml"), "--set", ONLY_TWO_STOCKED,
                 "--set", "solver.time_limit_s=1e-9"])
    err = capsys.readouterr().err.strip()
    assert code == 4 and "\n" not in err
    assert "no plan found within the time limit" in err and "solver.time_limit_s" in err and "infeasible" not in err


def test_time_limit_with_a_known_plan_returns_it_with_its_gap(capsys):
    """The best one-pool plan is known before any MILP runs: a limit that ends first returns
    it, marked time_limit, with a gap against the path lower bound that brackets the true
    optimum (solved without the limit)."""
    args = ["solve", str(INST / "azure-code.yaml"), "--format", "json"]   # its optimum has two pools
    assert main(args) == 0
    opt = json.loads(capsys.readouterr().out)
    code = main(args + ["--set", "solver.time_limit_s=1e-9"])
    res = json.loads(capsys.readouterr().out)
    s = res["solver"]
    assert code == 0 and s["status"] == "time_limit" and s["gap"] > 0 and s["notes"]
    best = res["baselines"]["homogeneous"]            # the best one-pool plan, found independently
    assert len(res["pools"]) == 1 and res["fleet"]["it_power_kw"] == pytest.approx(best["it_power_kw"], rel=1e-12)
    kw, opt_kw = res["fleet"]["it_power_kw"], opt["fleet"]["it_power_kw"]
    assert kw * (1 - s["gap"]) <= opt_kw * (1 + 1e-5) and opt_kw < kw   # inside the gap (JSON: 6 digits)
    assert main(args[:2] + ["--set", "solver.time_limit_s=1e-9"]) == 0
    assert "WARNING: time limit reached" in capsys.readouterr().out


class _FakeClock:
    """time.perf_counter for fleetopt.solver.milp, advanced by hand."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def _timed_stages(monkeypatch, spend: float):
    """Every MILP stage sees the deadline through solve_matrix; a stand-in solves for real
    (no limit), records the seconds it was given and advances the clock by ``spend``
    (reporting a time-out, with its plan, when that is more than it was given)."""
    import fleetopt.solver.milp as milp_mod

    clock, given, real = _FakeClock(), [], milp_mod.solve_matrix
    monkeypatch.setattr(milp_mod, "time", clock)

    def stage(rows, n_vars, w, sense, time_limit_s, *args, deadline=None, **kw):
        left = min(time_limit_s, deadline - clock.now)
        given.append(left)
        r = real(rows, n_vars, w, sense, 60.0, *args, **kw)
        clock.now += spend
        if spend > left:
            r.status = "time_limit"
        return r
    monkeypatch.setattr(milp_mod, "solve_matrix", stage)
    return given


def test_the_time_limit_is_shared_by_the_stages(monkeypatch):
    """solver.time_limit_s = 1 s: the optimum stage is given 1 s, spends 0.4 s, and the
    tie-break is given the 0.6 s left."""
    given = _timed_stages(monkeypatch, 0.4)
    res = solve(load_instance(INST / "heterogeneous.yaml", ["solver.time_limit_s=1"])).to_dict()
    assert given == pytest.approx([1.0, 0.6])
    assert res["solver"]["status"] == "optimal" and res["solver"]["notes"] == []


def test_the_tie_break_is_skipped_with_a_note_when_no_time_is_left(monkeypatch):
    given = _timed_stages(monkeypatch, 1.5)
    res = solve(load_instance(INST / "heterogeneous.yaml", ["solver.time_limit_s=1"])).to_dict()
    assert given == pytest.approx([1.0])                               # one stage only
    assert res["solver"]["status"] == "time_limit" and res["solver"]["gap"] is not None
    assert any("tie-break skipped" in n for n in res["solver"]["notes"])


def test_ties_go_to_the_simplest_plan():
    """The tie-break returns the fewest pools among plans within the proven gap: on the
    heterogeneous instance, every plan with fewer pools than the one returned is worse than
    the optimum by more than the gap (checked by solving with max_pools limited)."""
    inst = load_instance(INST / "heterogeneous.yaml")
    res = solve(inst).to_dict()
    gap = res["solver"]["gap"]
    assert gap <= 1e-6
    best = res["fleet"]["it_power_kw"]
    for k in range(1, len(res["pools"])):
        fewer = solve(replace(inst, pools=replace(inst.pools, max_pools=k))).to_dict()
        assert fewer["fleet"]["it_power_kw"] > best * (1 + gap) + 1e-9


def _columns(workers: int):
    from fleetopt.columns import generate

    return generate(Problem.from_instance(load_instance(INST / "heterogeneous.yaml")), workers=workers)


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

    parent, real = os.getpid(), C.pool_shapes

    def flaky(*a, **kw):
        if os.getpid() != parent:
            raise RuntimeError("worker lost")
        return real(*a, **kw)
    serial = _columns(1)
    monkeypatch.setattr(C, "pool_shapes", flaky)
    _same_columns(serial, _columns(3))


# --- mixed pools (pools.split_grid): the MILP over shares == enumeration through evaluate ---

def within_stock(inst: Instance, res: dict) -> bool:
    """The evaluated plan's GPUs of each type within the instance's inventory."""
    for g, gid in zip(inst.gpus, ("h100-sxm", "h200")):
        if g.max_gpus is not None and sum(p["gpus"] for p in res["pools"] if p["gpu"] == gid) > g.max_gpus:
            return False
    return True


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
                    res = evaluate(dist_rate, topo).to_dict()
                except InfeasibleError:
                    continue
                if not within_stock(inst, res):
                    continue
                if res["fleet"]["it_power_kw"] < best[0] - 1e-9:
                    best = (res["fleet"]["it_power_kw"], topo)
    return best


@pytest.mark.parametrize("seed,K,stock,stock_h200", [(11, 1, 16, None), (12, 2, 24, None), (13, 2, None, None),
                                                     (14, 1, 8, None), (2, 1, 40, None), (14, 2, 60, None),
                                                     (13, 1, 96, 96), (13, 2, 96, 96), (14, 2, 48, 64)])
def test_mixed_pools_equal_enumeration_through_evaluate(seed, K, stock, stock_h200):
    """The last three: both types stocked, no one-pool plan fits (the knee: the upper bound
    comes from the whole-column stage, elimination is Lagrangian)."""
    inst = tiny_instance(seed, K, None, stock, stock_h200)
    inst = replace(inst, pools=replace(inst.pools, boundaries=[2048, 16384], split_grid=2))
    dr = Problem.from_instance(inst)
    best_kw, topo = enumerate_mixed_plans(inst, dr, [2048], 16384)
    if math.isinf(best_kw):
        with pytest.raises(InfeasibleError):
            solve(inst).to_dict()
        return
    res = solve(inst).to_dict()
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["it_power_kw"] == pytest.approx(best_kw, rel=1e-6)
    if (seed, K, stock) == (2, 1, 40):                # this case's optimum is a mixed range
        assert any(p.share < 1 for p in topo) and "@" in res["topology"]
    # and what solve reports for its (possibly mixed) plan is what evaluate gives for it
    from fleetopt.topology import parse_topology
    fresh = evaluate(dr, parse_topology(res["topology"])).to_dict()
    assert_same_pools(fresh["pools"], res["pools"])


def quarter_covers(cfgs):
    """Every way to serve one range with shares k/4 summing to 1 (a config may repeat)."""
    out = []
    for parts in ([4], [3, 1], [2, 2], [2, 1, 1], [1, 1, 1, 1]):
        for pick in itertools.product(cfgs, repeat=len(parts)):
            key = tuple(sorted(zip(parts, pick)))
            if key not in {tuple(sorted(c)) for c in out}:
                out.append(list(zip(parts, pick)))
    return out


@pytest.mark.parametrize("seed,stock,stock_h200", [(13, 96, 96), (13, 120, 64), (11, 24, 32)])
def test_a_quarter_grid_equals_enumeration_under_binding_stock(seed, stock, stock_h200):
    """split_grid 4, one range, both GPU types stocked so that no one-pool plan fits:
    the solve equals the best of every cover in quarters, each sized by `evaluate`."""
    inst = tiny_instance(seed, 1, None, stock, stock_h200)
    inst = replace(inst, pools=replace(inst.pools, boundaries=[16384], split_grid=4))
    dr = Problem.from_instance(inst)
    best = math.inf
    for cover in quarter_covers([("h100-sxm", 4), ("h100-sxm", 8), ("h200", 8)]):
        topo = [PoolChoice(16384, g, tp, share=k / 4) for k, (g, tp) in cover]
        try:
            res = evaluate(dr, topo).to_dict()
        except InfeasibleError:
            continue
        if within_stock(inst, res):
            best = min(best, res["fleet"]["it_power_kw"])
    assert math.isfinite(best)
    res = solve(inst).to_dict()
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["it_power_kw"] == pytest.approx(best, rel=1e-6)


def test_a_stock_limit_makes_the_mixed_plan_strictly_better():
    """With H100s (the most efficient config here: 48 GPUs unlimited) limited to 40, one config per range
    must fall back to H200; a mixed range keeps as many H100s as it may and uses less
    energy, and a finer grid (which contains the coarser one) is never worse."""
    inst = tiny_instance(2, 1, None, 40)
    plans = {m: solve(replace(inst, pools=replace(inst.pools, split_grid=m))).to_dict() for m in (1, 2, 4)}
    kw = {m: r["fleet"]["it_power_kw"] for m, r in plans.items()}
    assert "@" not in plans[1]["topology"] and "@" in plans[4]["topology"]
    assert kw[4] <= kw[2] * (1 + 1e-9) and kw[2] < kw[1]
    mixed = plans[4]
    assert sum(p["gpus"] for p in mixed["pools"] if p["gpu"] == "h100-sxm") <= 40
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


@pytest.mark.parametrize("command", [["solve"], ["evaluate", "--topology", "4096:h100x8,65536:h100x8"],
                                     ["simulate", "--topology", "4096:h100x8,65536:h100x8", "--requests", "1000"]])
def test_a_compression_success_rate_with_paper_accounting_is_refused(command, capsys):
    """The paper's sub-CDF sizing compresses every request up to gamma x B: a success rate
    below 1 would be ignored, so it is refused in one line naming both fields."""
    code = main([command[0], str(INST / "paper-azure-h100.yaml"), *command[1:], "--set", "pools.compress.gamma=1.9",
                 "--set", "pools.compress.success=0.75", "--set", "pools.compress.accounting=paper"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "pools.compress.success" in err and "pools.compress.accounting" in err
    assert main([command[0], str(INST / "paper-azure-h100.yaml"), *command[1:], "--set", "pools.compress.gamma=1.9",
                 "--set", "pools.compress.success=0.75", "--format", "json"]) == 0    # consistent: honoured


@pytest.mark.parametrize("success", [1.0, 0.75])
def test_consistent_compression_honours_the_success_rate(success):
    """The short pool's rate: 1000 x (F(4096) + success x (F(1.9 x 4096) - F(4096))), F the
    paper's Azure CDF interpolated between its knots by hand (0.89821, and 0.97580 +
    (0.999965 - 0.97580) x 1638.4 / 2048 at 7782.4 tokens)."""
    from fleetopt.topology import parse_topology

    inst = load_instance(INST / "paper-azure-h100.yaml", ["pools.compress.gamma=1.9",
                                                                f"pools.compress.success={success}"])
    res = evaluate(inst, parse_topology("4096:h100x8,65536:h100x8")).to_dict()
    f_b, f_gb = 0.89821, 0.97580 + (0.999965 - 0.97580) * 1638.4 / 2048
    assert res["pools"][0]["arrival_rate"] == pytest.approx(1000 * (f_b + success * (f_gb - f_b)), rel=2e-4)


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
    by_matrix = direct(data, w)
    res = via_pyomo(data, w)
    assert by_matrix.status == res.status and by_matrix.objective == res.objective
    if math.isinf(best):
        assert by_matrix.status == "infeasible"
    else:
        assert by_matrix.status == "optimal" and by_matrix.objective == pytest.approx(best)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_mixed_columns(), st.integers(1, 150), st.lists(st.floats(0, 5), min_size=3, max_size=3))
def test_bound_elimination_keeps_every_plan_within_the_limit(case, limit, mu):
    """No column of any plan (any number of pools, limits ignored) of weight <= limit is
    eliminated by the path bound; with Lagrangian multipliers mu >= 0 on stock and cap, no
    column of any such plan that also meets stock and cap is."""
    from types import SimpleNamespace

    from fleetopt.solver.bounds import can_reach

    n_nodes, cols, _, stock, cap = case
    view = SimpleNamespace(bounds=list(range(1, n_nodes)), arc_i=np.array([c["i"] for c in cols]),
                           arc_j=np.array([c["j"] for c in cols]), frac=np.array([c["k"] / 2 for c in cols]))
    w = np.array([c["w"] for c in cols], float)
    mu_t = {"a": mu[0], "b": mu[1]}
    wl = w + np.array([mu_t[c["t"]] * c["g"] * (c["t"] in stock) + (mu[2] * c["p"] if cap else 0.0) for c in cols])
    k = sum(mu_t[t] * s for t, s in stock.items()) + (mu[2] * cap if cap else 0.0)
    keep = can_reach(view, w, float(limit))
    keep_lag = can_reach(view, w, float(limit), (wl, k))
    for plan in mixed_plans(n_nodes, cols, n_nodes):
        if sum(w[n] for n in plan) <= limit:
            assert all(keep[n] for n in plan)
            if within_limits(cols, plan, stock, cap):
                assert all(keep_lag[n] for n in plan)


# --- the staged solve (bounds, coarse grid, Lagrangian elimination, Dinkelbach) ----------

def staged_columns(n_nodes, cols, stock, tokens):
    """Random columns as a ``Columns`` (grid 2; types a and b, b's stock on its config)."""
    from fleetopt.columns import Columns
    from fleetopt.problem import Config

    cfgs = [Config(t, 1, "paged", stock.get(t), None) for t in ("a", "b")]
    arr = lambda key, dt=float: np.array([c[key] for c in cols], dt)
    return Columns(list(range(1, n_nodes)), cfgs, arr("i", int), arr("j", int),
                   np.array([0 if c["t"] == "a" else 1 for c in cols]), arr("g", int), arr("g", int), arr("w"),
                   arr("p"), np.asarray(tokens, float), arr("w"), share_k=arr("k", int), grid=2)


def staged_instance(K, cap, objective="max_tokens_per_joule"):
    inst = tiny_instance(1, K, None if cap is None else cap / 1e6)
    return replace(inst, objective=objective, pools=replace(inst.pools, max_pools=K))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_mixed_columns(), st.booleans(), st.lists(st.integers(1, 50), min_size=60, max_size=60))
def test_staged_solve_equals_enumeration_on_random_columns(case, ratio, toks):
    """The whole staged solve (one-pool and coarse-grid upper bounds, plain and Lagrangian
    elimination, the MILP, the tie-break; Dinkelbach when tokens differ) against every plan:
    least energy when every plan credits the same tokens (T_c = f_c (j_c - i_c)), the best
    tokens per joule otherwise."""
    from fleetopt.solver.milp import StagedSolve

    n_nodes, cols, K, stock, cap = case
    if ratio:
        tokens = [toks[n % 60] * c["k"] for n, c in enumerate(cols)]
    else:
        tokens = [c["k"] / 2 * (c["j"] - c["i"]) for c in cols]
    cc = staged_columns(n_nodes, cols, stock, tokens)
    res, iters = StagedSolve(Problem.from_instance(staged_instance(K, cap)), cc).run()
    best, best_plan = (-math.inf if ratio else math.inf), None
    for plan in mixed_plans(n_nodes, cols, K):
        if within_limits(cols, plan, stock, cap):
            e = sum(cols[n]["w"] for n in plan)
            v = sum(tokens[n] for n in plan) / e if ratio else e
            if (v > best) if ratio else (v < best):
                best, best_plan = v, plan
    if best_plan is None:
        assert not res.chosen and res.status == "infeasible"
        return
    assert res.status == "optimal"
    got = (sum(tokens[n] for n in res.chosen) / sum(cols[n]["w"] for n in res.chosen) if ratio
           else sum(cols[n]["w"] for n in res.chosen))
    assert got == pytest.approx(best, rel=1e-6)
    energy = sum(cols[n]["w"] for n in res.chosen)
    assert res.objective == pytest.approx(best if iters else energy, rel=1e-6)   # the ratio, or the energy
    assert within_limits(cols, res.chosen, stock, cap)
    assert iters == 0 or ratio


def test_dinkelbach_iterations_share_the_time_limit(monkeypatch):
    """The ratio objective (paper mode): the least-energy stage and every Dinkelbach stage
    are given what is left of the 1 s; when a stage outlasts it the plan so far is returned,
    marked time_limit, with a note."""
    sets = ["pools.boundaries=[1024,2048,4096,8192,16384,65536]", "pools.max_pools=2", "solver.time_limit_s=1"]
    inst = load_instance(INST / "paper-azure-h100.yaml", sets)
    full = solve(inst).to_dict()
    assert full["solver"]["dinkelbach_iterations"] >= 2          # least energy, then >= 2 ratio stages
    given = _timed_stages(monkeypatch, 0.4)
    res = solve(inst).to_dict()
    assert given == pytest.approx([1.0, 0.6, 0.2])          # least energy, two ratio stages (the last cut)
    assert res["solver"]["status"] == "time_limit"
    assert any("Dinkelbach stopped" in n for n in res["solver"]["notes"])
    assert res["fleet"]["tokens_per_joule"] <= full["fleet"]["tokens_per_joule"] * (1 + 1e-12)
