"""Disaggregated prefill/decode pools: transfer physics by hand, queueing closed forms, the
fleet_disagg MILP against enumeration (random columns and real instances through
`evaluate`), the simulator against the sizing and conservation of energy, the CLI."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetopt import evaluate, load_instance, solve
from fleetopt.catalog import load_catalog
from fleetopt.cli import main
from fleetopt.disagg.links import kv_link, kv_transfer_bytes, kv_transfer_energy_j, kv_transfer_ms, transfer_lanes
from fleetopt.disagg.prefill import (
    prefill_busy_power_w,
    prefill_chunks,
    prefill_service_ms,
    ttft_exceed,
    ttft_quantile,
    wait_tail,
)
from fleetopt.errors import InfeasibleError
from fleetopt.loading import validate_instance
from fleetopt.problem import Problem
from fleetopt.profiles import make_profile
from fleetopt.queueing import erlang_c, wait_quantile_mgc
from fleetopt.simulator.disagg import simulate_prefill
from fleetopt.simulator.run import simulate
from fleetopt.topology import PoolChoice, parse_topology
from formulations import get as get_formulation
from formulations.fleet_disagg import DisaggModelData, Kind, build, constraint_rows
from formulations.highs import solve_matrix, solve_pyomo, write_lp

INST = Path(__file__).resolve().parents[1] / "instances"


# --- physics of the transfer and of prefill-only instances, by hand --------------------------

def test_kv_transfer_by_hand():
    cat = load_catalog()
    m = cat.model("llama-3.1-70b")
    kvb = 2 * 80 * 8 * 128 * 2                        # K and V x layers x KV heads x head dim x bf16
    assert m.kv_elements_per_token * 2 == kvb == 327_680
    b = kv_transfer_bytes(4096, kvb)
    assert b == 4096 * 327_680
    link = kv_link("infiniband-ndr")
    # 8 lanes of 50 GB/s at 90 %: 1.342 GB in 3.728 ms, plus 20 us
    assert kv_transfer_ms(b, 8, 50e9, 0.9, 20.0) == pytest.approx(0.020 + b / (8 * 50e9 * 0.9) * 1e3)
    assert link.lane_bytes_per_s(cat.gpu("h100")) == 50e9
    assert kv_transfer_energy_j(b, 240.0) == pytest.approx(b * 8 * 240e-12)
    nv = kv_link("nvlink")
    assert nv.lane_bytes_per_s(cat.gpu("h100")) == 450e9 and nv.same_gpu_type
    assert nv.energy_pj_per_bit(cat.gpu("h100")) == cat.gpu("h100").link_pj_per_bit
    assert transfer_lanes(8, 4) == transfer_lanes(4, 8) == 4


def test_prefill_time_is_the_sum_of_its_chunk_steps_and_a_cap_slows_it():
    prof = make_profile("physical", "llama-3.1-70b", "h100", 8, chunk_tokens=4096)
    ms, joules = prefill_chunks(prof, np.array([6000.0]))
    op1 = prof.operating_point(0.0, 0.0, 4096.0, 2048.0)
    op2 = prof.operating_point(0.0, 0.0, 1904.0, 4096.0 + 952.0)
    assert ms[0] == pytest.approx(op1.step_ms + op2.step_ms, rel=1e-9)
    assert joules[0] == pytest.approx((op1.step_ms * op1.power_per_gpu_w + op2.step_ms * op2.power_per_gpu_w) * 1e-3,
                                      rel=1e-9)
    capped = make_profile("physical", "llama-3.1-70b", "h100", 8, chunk_tokens=4096, power_cap_w=400.0)
    p = np.array([500.0, 6000.0])
    assert np.all(prefill_service_ms(capped, p) > prefill_service_ms(prof, p))
    assert np.all(prefill_busy_power_w(capped, p) <= 400.0 + 1e-6)


# --- queueing closed forms ------------------------------------------------------------------

@pytest.mark.parametrize("c,rho,cv2", [(1, 0.6, 1.0), (4, 0.8, 0.3), (12, 0.85, 2.0)])
def test_ttft_quantile_of_one_prompt_length_is_kimura_plus_its_time(c, rho, cv2):
    """With one prompt length the TTFT is W + s: its P99 is Kimura's P99 wait + s."""
    es, s_own = 40.0, 55.0
    lam = rho * c / es
    lc, dec = wait_tail(np.array([c]), np.array([lam]), np.array([es]), np.array([cv2]))
    assert math.exp(lc[0]) == pytest.approx(erlang_c(c, lam * es), rel=1e-9)
    q = ttft_quantile(0.99, lc, dec, np.array([s_own]), np.array([1.0]), np.array([0]), 1)
    assert q[0] == pytest.approx(wait_quantile_mgc(c, lam, es, cv2) + s_own, abs=2e-3)
    # a two-point mix: the exceedance at the quantile is 1 %
    own, w = np.array([20.0, 300.0]), np.array([0.995, 0.005])
    q2 = ttft_quantile(0.99, lc, dec, own, w, np.array([0, 0]), 1)
    assert ttft_exceed(q2, lc, dec, own, w, np.array([0, 0]), 1)[0] == pytest.approx(0.01, abs=1e-5)


def _one_range_instance(**pools):
    return validate_instance({
        "name": "pd", "mode": "physical", "model": "llama-3.1-70b",
        "gpus": [{"id": "h100", "tp": [4, 8]}, {"id": "h200", "tp": [8]}],
        "workload": {"distribution": {"type": "lognormal", "input_median": 900.0, "input_sigma": 1.0,
                                      "output_median": 220.0, "output_sigma": 0.8, "max_tokens": 16384},
                     "arrival_rate": 60.0},
        "slo": {"ttft_p99_ms": 800, "tpot_p99_ms": 60},
        "power": {"host_w_per_node": 1000, "provisioning": "expected"},
        "pools": {"max_pools": 2, "boundaries": [2048, 16384], "admission": ["paged"], **pools}})


def test_phase_counts_are_the_least_meeting_their_slos():
    """n_p: the least count whose P(TTFT > SLO) <= 1 % (or the utilisation floor); n_d: the
    least whose P99 slot wait is 0 (Erlang-C <= 1 %) (or the floor), checked at n - 1."""
    inst = _one_range_instance(disaggregation="only")
    dr = Problem.from_instance(inst)
    res = evaluate(dr, parse_topology("16384:pd(h100x8/h200x8)")).to_dict()
    pre, dec = res["pools"]
    assert (pre["phase"], dec["phase"]) == ("prefill", "decode")
    lam = pre["arrival_rate"] / 1e3
    load_p = lam * pre["mean_service_ms"]
    assert pre["utilization"] == pytest.approx(load_p / pre["instances"])
    floor_p = max(math.floor(load_p) + 1, math.ceil(load_p / 0.85 - 1e-12))
    assert pre["instances"] >= floor_p and pre["ttft_p99_ms"] <= 800 + 1e-6
    if pre["instances"] > floor_p:                    # TTFT binds: one fewer misses it
        assert "ttft" in pre["binding"]
    # decode: a slot is held for E[O] steps; a waiting request finds every slot busy, so the
    # queue is taken with steps at the slot-capped batch (the reported TPOT step)
    dist = dr.dist
    e_out = float(dist.w @ dist.out) / float(dist.w.sum())
    load_d = lam * dec["tpot_p99_ms"] * e_out
    c = dec["instances"] * dec["slots"]
    assert erlang_c(c, load_d) <= 0.01 + 1e-12
    if erlang_c(c - dec["slots"], load_d) <= 0.01:   # one fewer would not wait: the utilisation cap binds
        assert dec["binding"].startswith("utilization")
    # the mean batch is Little's law with steps at that batch, within the utilisation cap
    assert dec["batch"] == pytest.approx(lam / dec["instances"] * dec["mean_service_ms"], rel=1e-9)
    assert dec["batch"] <= 0.85 * dec["slots"] + 1e-9
    assert dec["mean_service_ms"] <= dec["tpot_p99_ms"] * e_out + 1e-9
    # fleet totals are the phases' sums; tokens only on the decode side
    f = res["fleet"]
    assert f["instances"] == pre["instances"] + dec["instances"]
    assert f["it_power_kw"] == pytest.approx(pre["it_power_kw"] + dec["it_power_kw"])
    assert pre["tokens_per_s"] == 0 and f["tokens_per_s"] == pytest.approx(dec["tokens_per_s"])
    # the link's power: lambda x E[prompt] x KV bytes x 8 x pJ/bit
    e_in = float(dist.w @ dist.inp) / float(dist.w.sum())
    assert pre["kv_transfer_w"] == pytest.approx(60.0 * e_in * 327_680 * 8 * 240e-12, rel=1e-6)


# --- the formulation on random columns against enumeration of every plan ------------------------

@st.composite
def random_split_columns(draw):
    """Aggregated columns and, per arc, prefill configs (one column per width <= H_p; a
    narrower width never cheaper) and decode configs with h_d GPUs per instance."""
    n_nodes = draw(st.integers(2, 4))
    types = ["a", "b"][: draw(st.integers(1, 2))]
    agg, pre, dec = [], [], []
    sizes = [1, 2, 4]
    for i in range(n_nodes - 1):
        for j in range(i + 1, n_nodes):
            for t in types:
                if draw(st.booleans()):
                    agg.append({"i": i, "j": j, "t": t, "w": draw(st.integers(5, 80)), "p": draw(st.integers(1, 40)),
                                "g": draw(st.integers(1, 16))})
                if draw(st.booleans()):
                    H = draw(st.sampled_from(sizes))
                    w0, p0, g0 = draw(st.integers(1, 40)), draw(st.integers(1, 20)), draw(st.integers(1, 8))
                    for width in sorted({h for h in sizes if h < H} | {H}, reverse=True):
                        pre.append({"i": i, "j": j, "t": t, "H": H, "width": width, "w": w0, "p": p0, "g": g0})
                        w0 += draw(st.integers(0, 6))
                        p0 += draw(st.integers(0, 3))
                        g0 += draw(st.integers(0, 2))
                if draw(st.booleans()):
                    dec.append({"i": i, "j": j, "t": t, "h": draw(st.sampled_from(sizes)),
                                "w": draw(st.integers(1, 40)),
                                "p": draw(st.integers(1, 20)), "g": draw(st.integers(1, 8))})
    K = draw(st.integers(1, 3))
    stock = {t: draw(st.integers(6, 40)) for t in types if draw(st.booleans())}
    cap = draw(st.one_of(st.none(), st.integers(10, 90)))
    same = draw(st.booleans())
    return n_nodes, agg, pre, dec, K, stock, cap, same


def _split_data(n_nodes, agg, pre, dec, K, stock, cap, same):
    def kind(cols, width_key=None):
        if not cols:
            return Kind.empty()
        return Kind(np.array([c["i"] for c in cols]), np.array([c["j"] for c in cols]), [c["t"] for c in cols],
                    np.array([c["g"] for c in cols]), np.array([c["p"] for c in cols], float),
                    None if width_key is None else np.array([c[width_key] for c in cols]))
    data = DisaggModelData(n_nodes, kind(agg), kind(pre, "width"), kind(dec, "h"), K, stock, cap, same)
    return data, np.array([c["w"] for c in agg + pre + dec], float)


def brute_force_split(n_nodes, agg, pre, dec, K, stock, cap, same):
    """Every path 0 -> M with <= K arcs x, per arc, an aggregated column or a (prefill config,
    decode config) pair priced at the transfer width min(H_p, h_d)."""
    options = {}
    for c in agg:
        options.setdefault((c["i"], c["j"]), []).append([c])
    for p in pre:
        for d in dec:
            same_arc = (p["i"], p["j"]) == (d["i"], d["j"])
            if same_arc and p["width"] == min(p["H"], d["h"]) and (not same or p["t"] == d["t"]):
                options.setdefault((p["i"], p["j"]), []).append([p, d])
    best = math.inf
    for r in range(0, min(K, n_nodes - 1)):
        for cut in itertools.combinations(range(1, n_nodes - 1), r):
            nodes = [0, *cut, n_nodes - 1]
            arcs = list(zip(nodes, nodes[1:]))
            if any(a not in options for a in arcs):
                continue
            for pick in itertools.product(*(options[a] for a in arcs)):
                cols = [c for grp in pick for c in grp]
                if cap is not None and sum(c["p"] for c in cols) > cap + 1e-9:
                    continue
                if any(sum(c["g"] for c in cols if c["t"] == t) > s for t, s in stock.items()):
                    continue
                best = min(best, sum(c["w"] for c in cols))
    return best


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_split_columns())
def test_disagg_milp_equals_enumeration_on_random_columns(case):
    data, w = _split_data(*case)
    bf = brute_force_split(*case)
    res = solve_matrix(constraint_rows(data), data.n_vars(), w, "min", 30, 0.0, 1, 0)
    if math.isinf(bf):
        assert res.status == "infeasible"
        return
    assert res.status == "optimal" and res.objective == pytest.approx(bf)
    assert solve_pyomo(build(data, w), 30, 0.0, 1, 0).objective == pytest.approx(bf)     # both transports
    # the chosen columns form a plan: on each split arc one prefill and one decode column
    na, npre = len(case[1]), len(case[2])
    u = [c - na for c in res.chosen if na <= c < na + npre]
    v = [c - na - npre for c in res.chosen if c >= na + npre]
    arcs_u = sorted((case[2][k]["i"], case[2][k]["j"]) for k in u)
    assert arcs_u == sorted((case[3][k]["i"], case[3][k]["j"]) for k in v)


def test_formulation_is_registered_and_every_family_is_named(tmp_path):
    assert get_formulation("fleet_disagg").DisaggModelData is DisaggModelData
    assert get_formulation("fleet").__name__ == "formulations.fleet"
    agg = [{"i": 0, "j": 2, "t": "a", "w": 9, "p": 5, "g": 8}]
    pre = [{"i": 0, "j": 1, "t": "a", "H": 8, "width": 8, "w": 3, "p": 2, "g": 8},
           {"i": 0, "j": 1, "t": "a", "H": 8, "width": 4, "w": 4, "p": 2, "g": 8},
           {"i": 1, "j": 2, "t": "b", "H": 4, "width": 4, "w": 2, "p": 1, "g": 4}]
    dec = [{"i": 0, "j": 1, "t": "a", "h": 4, "w": 2, "p": 1, "g": 4},
           {"i": 0, "j": 1, "t": "b", "h": 8, "w": 3, "p": 1, "g": 8},
           {"i": 1, "j": 2, "t": "b", "h": 4, "w": 2, "p": 1, "g": 4}]
    data, w = _split_data(3, agg, pre, dec, 2, {"a": 16}, 20.0, True)
    fams = {r.family for r in constraint_rows(data)}
    assert fams == {"flow_source", "flow_balance", "prefill", "decode", "width", "sametype", "max_pools", "stock",
                    "power_cap"}
    path = tmp_path / "m.lp"
    write_lp(build(data, w), str(path))
    text = path.read_text()
    for fam in fams:
        assert fam in text


# --- real instances: solve == enumeration of partitions x (aggregated | pd pair) via evaluate ---

CONFIGS = [("h100-sxm", 4), ("h100-sxm", 8), ("h200", 8)]


def enumerate_plans(inst, dr, kinds=("agg", "pd")):
    """Least IT power over every partition of [2048, 16384] into <= K ranges x, per range,
    an aggregated config or a pd pair of configs, each plan sized by `evaluate`."""
    options = []
    if "agg" in kinds:
        options += [dict(gpu=g, tp=t) for g, t in CONFIGS]
    if "pd" in kinds:
        options += [dict(gpu=g2, tp=t2, prefill_gpu=g1, prefill_tp=t1) for (g1, t1) in CONFIGS for (g2, t2) in CONFIGS]
    best = (math.inf, None)
    for uppers in ([16384], [2048, 16384]) if inst.pools.max_pools >= 2 else ([16384],):
        for pick in itertools.product(options, repeat=len(uppers)):
            topo = [PoolChoice(u, **o) for u, o in zip(uppers, pick)]
            try:
                res = evaluate(dr, topo).to_dict()
            except InfeasibleError:
                continue
            lim = inst.gpus[0].max_gpus
            if lim is not None and sum(p["gpus"] for p in res["pools"] if p["gpu"] == "h100-sxm") > lim:
                continue
            if res["fleet"]["it_power_kw"] < best[0] - 1e-9:
                best = (res["fleet"]["it_power_kw"], topo)
    return best


@pytest.mark.parametrize("mode,stock", [("allow", None), ("only", None), ("allow", 40)])
def test_solve_equals_enumeration_with_both_kinds_of_pool(mode, stock):
    inst = _one_range_instance(disaggregation=mode)
    if stock:
        inst = validate_instance({**__import__("msgspec").to_builtins(inst),
                                  "gpus": [{"id": "h100", "tp": [4, 8], "max_gpus": stock}, {"id": "h200", "tp": [8]}]})
    dr = Problem.from_instance(inst)
    best_kw, topo = enumerate_plans(inst, dr, ("agg", "pd") if mode == "allow" else ("pd",))
    res = solve(inst).to_dict()
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["it_power_kw"] == pytest.approx(best_kw, rel=1e-6)
    assert res["solver"]["objective"] == pytest.approx(best_kw * 1e3, rel=1e-9)   # columns == evaluate
    agg = res["baselines"]["aggregated"]
    if mode == "allow":                             # never worse than the best aggregated plan
        assert res["fleet"]["it_power_kw"] <= agg["it_power_kw"] * (1 + 1e-9)
    again = evaluate(dr, parse_topology(res["topology"])).to_dict()    # the topology round-trips
    assert again["fleet"]["it_power_kw"] == pytest.approx(res["fleet"]["it_power_kw"], rel=1e-12)


def test_allow_on_a_shipped_instance_is_at_least_as_good_as_aggregated():

    inst = load_instance(INST / "azure-conv-h100.yaml", ["pools.disaggregation=allow"])
    res = solve(inst).to_dict()
    agg = res["baselines"]["aggregated"]
    assert res["solver"]["status"] == "optimal"
    assert res["fleet"]["tokens_per_joule"] >= agg["tokens_per_joule"] * (1 - 1e-9)
    off = load_instance(INST / "azure-conv-h100.yaml")
    assert solve(off).to_dict()["fleet"]["it_power_kw"] == pytest.approx(agg["it_power_kw"], rel=1e-9)


@pytest.mark.parametrize("mode", ["only", "allow"])
def test_power_caps_are_a_choice_for_both_kinds_and_round_trip_in_the_topology(mode):
    inst = _one_range_instance(disaggregation=mode, phase_power_caps=[1.0, 0.7])
    res = solve(inst).to_dict()
    free = solve(_one_range_instance(disaggregation=mode)).to_dict()
    assert res["fleet"]["it_power_kw"] <= free["fleet"]["it_power_kw"] * (1 + 1e-9)
    again = evaluate(inst, parse_topology(res["topology"])).to_dict()
    assert again["fleet"]["it_power_kw"] == pytest.approx(res["fleet"]["it_power_kw"], rel=1e-9)
    # the aggregated baseline is offered the same caps: never worse than uncapped, and a real plan
    agg, agg_free = res["baselines"]["aggregated"], free["baselines"]["aggregated"]
    assert agg["it_power_kw"] <= agg_free["it_power_kw"] * (1 + 1e-9)
    again = evaluate(inst, parse_topology(agg["topology"])).to_dict()
    assert again["fleet"]["it_power_kw"] == pytest.approx(agg["it_power_kw"], rel=1e-9)
    if mode == "allow":
        assert res["fleet"]["it_power_kw"] <= agg["it_power_kw"] * (1 + 1e-9)


# --- the simulator -------------------------------------------------------------------------------

def test_prefill_queue_without_batching_is_mmc_and_energy_is_busy_plus_idle():
    """One prompt per batch (budget below every prompt), exponential prefill times, work-based
    JSQ: an M/M/c FCFS queue; energy = busy time x busy W + the rest x idle W."""
    rng = np.random.default_rng(4)
    n, c, es, rho = 120_000, 3, 20.0, 0.8
    lam = rho * c / es
    arr = np.cumsum(rng.exponential(1 / lam, n))
    svc = rng.exponential(es, n)
    prompts = np.full(n, 100.0)
    run = simulate_prefill(c, arr, prompts, svc, np.full(n, 500.0), lambda t: 1.0, lambda t: 500.0, 50.0, 100.0,
                           np.full(n, 2.0), np.full(n, 0.5), n // 10)
    wait = (run.start_ms - arr)[n // 10:]
    C = erlang_c(c, lam * es)
    assert (wait > 1e-9).mean() == pytest.approx(C, abs=0.02)
    assert wait.mean() == pytest.approx(C / (c / es - lam), rel=0.08)
    assert run.batches == n
    assert run.energy_j == pytest.approx((500.0 * run.busy_ms + 100.0 * (c * run.window_ms - run.busy_ms)) * 1e-3)
    assert np.all(run.ready_ms >= run.done_ms + 2.0 - 1e-9)             # every transfer after its prefill
    # transfers leave one instance one after another
    for k in range(c):
        r = np.sort(run.ready_ms[run.instance == k])
        assert np.all(np.diff(r) >= 2.0 - 1e-9)


def test_batching_fills_the_token_budget_and_is_never_slower():
    rng = np.random.default_rng(0)
    n = 20_000
    arr = np.cumsum(rng.exponential(0.5, n))
    prompts = rng.integers(50, 400, n).astype(float)
    alone = 5.0 + 0.01 * prompts
    kw = dict(alone_w=np.full(n, 300.0), batch_w_of=lambda t: 300.0, idle_w=50.0, transfer_ms=np.zeros(n),
              transfer_j=np.zeros(n), warm=0)
    one = simulate_prefill(1, arr, prompts, alone, batch_ms_of=lambda t: 1e9, budget_tokens=1.0, **kw)
    bat = simulate_prefill(1, arr, prompts, alone, batch_ms_of=lambda t: 5.0 + 0.01 * t, budget_tokens=2048.0, **kw)
    assert bat.batches < one.batches
    assert (bat.done_ms - arr).mean() < (one.done_ms - arr).mean()


@pytest.mark.parametrize("name,topo", [
    ("azure-conv-h100", "1280:b200x4:paged,16384:pd(b200x4/b200x4:paged)"),
    ("azure-conv-h100", "16384:pd(h100x8/h200x8:paged)"),
    ("azure-code", "16384:pd(b200x8/h200x8:paged)"),
])
def test_simulated_split_pools_agree_with_their_sizing(name, topo):
    """Within the tolerances the aggregated pools meet: P99 TTFT within 10 %, TPOT under
    the SLO, tokens per joule within 8 %; energy conserved across the phases."""

    inst = load_instance(INST / f"{name}.yaml")
    r = simulate(Problem.from_instance(inst), parse_topology(topo), 60_000, seed=2)
    for p in r["pools"]:
        if p["phase"] != "split":
            continue
        assert p["ttft_p99_ms"] == pytest.approx(p["analytical_ttft_p99_ms"], rel=0.10)
        assert p["tpot_p99_ms"] <= inst.slo.tpot_p99_ms
        assert p["decode_wait_p99_ms"] <= 1.0                      # sized for no P99 slot wait
        # conservation: the range's energy is the three phases', on one window
        scale = p["prefill_window_ms"] / p["decode_window_ms"]
        e = p["prefill_energy_j"] + p["transfer_energy_j"] + p["decode_energy_j"] * scale
        assert p["energy_per_query_wh"] == pytest.approx(e * inst.power.pue / 3600 / p["requests_measured"], rel=1e-9)
    assert abs(r["deviation"]["tokens_per_joule"]) < 0.08
    assert r["fleet"]["slo_attainment"] >= 0.99


# --- CLI, sweep and refine -------------------------------------------------------------------------

def test_cli_evaluate_split_and_one_line_errors(capsys, tmp_path):
    path = str(INST / "azure-conv-h100.yaml")
    assert main(["evaluate", path, "--topology", "16384:pd(h100x8/h200x8)", "--format", "json"]) == 0
    pools = json.loads(capsys.readouterr().out)["pools"]
    assert [p["phase"] for p in pools] == ["prefill", "decode"]
    for args, text in [(["evaluate", path, "--topology", "16384:pd(h100x8)"], "pd(PREFILL_GPU"),
                       (["evaluate", path, "--topology", "16384:pd(h100x8/h200x8),16384:h100x8"],
                        "cannot also be mixed"),
                       (["solve", path, "--set", "pools.disaggregation=maybe"], "pools.disaggregation"),
                       (["solve", path, "--set", "pools.disaggregation=allow", "--set", "pools.kv_link=carrier-pigeon"],
                        "unknown link"),
                       (["solve", str(INST / "paper-azure-h100.yaml"), "--set", "pools.disaggregation=allow"],
                        "mode physical"),
                       (["evaluate", path, "--set", "pools.kv_link=nvlink", "--topology", "16384:pd(h100x8/h200x8)"],
                        "one GPU type")]:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert text in err and len(err.splitlines()) == 1


def test_sweep_axis_over_disaggregation(tmp_path):
    from fleetopt.sweeps import run_sweep

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"schema_version: 1\nname: pd\nbase: {INST / 'azure-conv-h100.yaml'}\n"
                    "grid:\n  pools.disaggregation: [off, allow, only]\n")
    out = tmp_path / "out"
    r = run_sweep(str(spec), str(out))
    assert r["done"] == 3 and r["failed"] == 0
    import pandas as pd

    df = pd.read_parquet(out / "cases").set_index("axis:pools.disaggregation")
    assert (df["status"] == "optimal").all()
    off = df.loc["false", "tokens_per_joule"]        # YAML reads a bare off as false, which means off
    assert "pd(" not in df.loc["false", "topology"]
    assert df.loc["allow", "tokens_per_joule"] >= off * (1 - 1e-9)
    assert "pd(" in df.loc["only", "topology"]


def test_refine_keeps_a_split_plan_split(tmp_path):
    from fleetopt.refinement import refine

    inst = _one_range_instance(disaggregation="only")
    r = refine(Problem.from_instance(inst), trials=4, storage=str(tmp_path / "j.journal"), seed=0)
    assert "pd(" in r["best"]["topology"]
    assert r["improvement"] >= -1e-9                    # the MILP plan is the first trial


def test_ties_go_to_the_aggregated_plan():
    """min_cost with as many GPUs either way: the plan stays aggregated (a split range counts
    two pools, and of equal plans the aggregated one wins)."""

    sets = ["model=llama-3.1-70b", "gpus=[{id: a100, tp: [4, 8]}]", "objective=min_cost", "slo.ttft_p99_ms=2500",
            "slo.tpot_p99_ms=100", "workload.arrival_rate=8"]    # a rate where the packaged calibration ties
    off = solve(load_instance(INST / "sharegpt-llama8b.yaml", sets + ["pools.disaggregation=off"])).to_dict()
    only = solve(load_instance(INST / "sharegpt-llama8b.yaml", sets + ["pools.disaggregation=only"])).to_dict()
    on = solve(load_instance(INST / "sharegpt-llama8b.yaml", sets + ["pools.disaggregation=allow"])).to_dict()
    # a genuine tie: the best split plan costs what the best aggregated one does
    assert only["fleet"]["cost_per_hour"] == pytest.approx(off["fleet"]["cost_per_hour"]) and "pd(" in only["topology"]
    assert on["fleet"]["cost_per_hour"] == pytest.approx(off["fleet"]["cost_per_hour"])
    assert "pd(" not in on["topology"] and on["topology"] == off["topology"]
