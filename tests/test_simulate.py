"""The simulator against queueing closed forms, the physics step time, conservation and seeds."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fleetopt import load_instance
from fleetopt.catalog import load_catalog
from fleetopt.cli import main
from fleetopt.problem import Problem
from fleetopt.profiles import make_profile
from fleetopt.queueing import erlang_c
from fleetopt.simulator.core import PoolSpec, simulate_pool
from fleetopt.simulator.loghist import LogHist
from fleetopt.simulator.run import simulate
from fleetopt.simulator.tables import step_tables
from fleetopt.topology import parse_topology

INST = Path(__file__).resolve().parents[1] / "instances"


def run_queue(c, lam_per_ms, service, n=200_000, seed=3, power=(100.0, 100.0)):
    """One instance with c slots and a step of 1 ms at any batch: a request holds a slot
    for `service` (ms, = its output tokens), so the pool is an M/G/c queue."""
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1 / lam_per_ms, n))
    svc = service(rng, n)
    spec = PoolSpec(1, c, math.inf, "reserve", lambda b, kv: (1.0, power[0]), power[1])
    st = simulate_pool(spec, arr.tolist(), [1.0] * n, svc.tolist(), [0.0] * n, n // 10, 1e9, None)
    return st, arr


def test_first_token_ends_the_prefill_and_o_minus_1_steps_follow():
    """By hand, a step of b ms at batch b.  A (prefill 4 ms, 3 tokens) is admitted alone at 0
    (4 prefill steps of 1 ms); B arrives at 2 and the step becomes 2 ms, so A's last two
    prefill steps take 4 ms: its first token at 6 (not 0 + 4), then 2 decode steps of 2 ms:
    finish 10, TPOT (10 - 6) / 2 = 2 ms, the step.  A disaggregated decode pool's requests
    (``prefilled``) have their first token at admission and O - 1 steps to run."""
    seen = {}
    spec = PoolSpec(1, 4, math.inf, "reserve", lambda b, kv: (float(b), 100.0), 50.0)
    simulate_pool(spec, [0.0, 2.0], [10.0, 10.0], [3.0, 10.0], [4.0, 4.0], 0, 1e9, None,
                  record=lambda rid, ft, t, k: seen.update({rid: (ft, t)}))
    assert seen[0] == pytest.approx((6.0, 10.0))
    seen.clear()
    simulate_pool(spec, [0.0], [10.0], [3.0], [0.0], 0, 1e9, None, prefilled=True,
                  record=lambda rid, ft, t, k: seen.update({rid: (ft, t)}))
    assert seen[0] == pytest.approx((0.0, 2.0))                 # 2 steps of 1 ms after the first token


@pytest.mark.parametrize("c,rho", [(1, 0.7), (4, 0.8), (16, 0.85)])
def test_mmc_wait_matches_erlang_c(c, rho):
    mu = 1 / 20.0                                   # mean service 20 ms
    lam = rho * c * mu
    st, _ = run_queue(c, lam, lambda r, n: r.exponential(20.0, n))
    pw = 1 - st.wait.frac_zero()
    C = erlang_c(c, lam / mu)
    assert pw == pytest.approx(C, abs=0.02)
    assert st.wait.mean == pytest.approx(C / (c * mu - lam), rel=0.08)   # E[W] = C / (c mu - lambda)


def test_md1_wait_matches_pollaczek_khinchine():
    d, rho = 20.0, 0.75                             # deterministic 20 ms service
    lam = rho / d
    st, _ = run_queue(1, lam, lambda r, n: np.full(n, d))
    assert st.wait.mean == pytest.approx(rho * d / (2 * (1 - rho)), rel=0.06)   # P-K: rho / (2 mu (1 - rho))
    assert 1 - st.wait.frac_zero() == pytest.approx(rho, abs=0.02)             # P(wait) = rho for one server


def test_conservation_every_request_once_and_energy_is_power_times_time():
    st, arr = run_queue(4, 0.1, lambda r, n: r.exponential(20.0, n), n=50_000, power=(250.0, 250.0))
    assert st.completed == 50_000
    assert st.measured == 50_000 - 5_000
    window_s = (arr[-1] - arr[5_000]) / 1e3
    assert st.energy_j == pytest.approx(250.0 * window_s, rel=1e-9)       # constant power: P x window


def test_busy_and_idle_power_integrate_separately():
    st, arr = run_queue(1, 0.02, lambda r, n: np.full(n, 10.0), n=40_000, power=(300.0, 100.0))
    window_s = (arr[-1] - arr[4_000]) / 1e3
    busy = st.busy_slot_ms / 1e3 / window_s                               # one slot: fraction busy
    assert busy == pytest.approx(0.2, abs=0.01)                           # rho = 0.02 x 10
    assert st.energy_j == pytest.approx((300 * busy + 100 * (1 - busy)) * window_s, rel=1e-6)


def test_fixed_batch_step_equals_physics():
    """b identical requests admitted together decode at the physics step of batch b."""
    cat = load_catalog()
    prof = make_profile("physical", "llama-3.1-70b", "h100", 8, cat)
    b, prompt, out = 32, 1000, 200
    f = step_tables(prof, b, 4096, 0.0, 0.0, 0.0)
    spec = PoolSpec(1, b, math.inf, "reserve", f, 100.0)
    arr = [i * 1e-6 for i in range(b)]
    st = simulate_pool(spec, arr, [float(prompt)] * b, [float(out)] * b, [0.0] * b, 0, 1e9, None)
    mean_held = prompt + out / 2
    expect = prof.operating_point(b, mean_held).step_ms
    assert st.tpot.mean == pytest.approx(expect, rel=0.01)


def test_paged_kv_overflow_preempts_and_still_finishes_everything():
    n = 2000
    spec = PoolSpec(1, 64, 20_000.0, "paged", lambda b, kv: (1.0, 100.0), 50.0)
    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(2.0, n)).tolist()
    st = simulate_pool(spec, arr, [500.0] * n, [400.0] * n, [0.0] * n, 0, 1e9, None)
    assert st.preemptions > 0 and st.completed == n


def test_seeded_reproducibility():
    inst = load_instance(INST / "azure-conv-h100.yaml")
    topo = parse_topology("4096:h100x8,16384:h100x8")
    a = simulate(Problem.from_instance(inst), topo, 5000, seed=7)
    b = simulate(Problem.from_instance(inst), topo, 5000, seed=7)
    c = simulate(Problem.from_instance(inst), topo, 5000, seed=8)
    assert a["fleet"] == b["fleet"] and a["pools"] == b["pools"]
    assert a["fleet"] != c["fleet"]


def test_loghist_quantiles_within_resolution():
    h = LogHist()
    x = np.random.default_rng(1).lognormal(3, 1, 100_000)
    for v in x:
        h.add(float(v))
    for q in (0.5, 0.9, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(x, q), rel=0.006)


def test_simulate_cli_reports_every_field(capsys):
    code = main(["simulate", str(INST / "paper-azure-h100.yaml"), "--topology", "4096:h100x8,65536:h100x8",
                 "--requests", "20000", "--seed", "1", "--format", "json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "slo_attainment", "tokens_per_joule",
              "energy_per_query_wh", "preemptions", "e2e_p99_ms", "queue_wait_p99_ms"):
        assert k in r["fleet"] and k in r["pools"][0]
    assert set(r["sim"]) >= {"requests", "seconds", "requests_per_second", "seed"}
    assert abs(r["deviation"]["tokens_per_joule"]) < 0.10
    assert main(["simulate", str(INST / "paper-azure-h100.yaml")]) == 2


def test_solve_verify_and_repair(capsys):
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--set", "slo.ttft_p99_ms=400", "--repair",
                 "--requests", "20000", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    v = r["verification"]
    assert v["repair"]["holds"] and not v["slo_missed"]
    assert all(a >= b for a, b in zip(v["repair"]["instances_after"], v["repair"]["instances_before"]))


def _trace_instance(tmp_path, rate="trace"):
    rng = np.random.default_rng(0)
    n = 2000
    t = np.cumsum(rng.exponential(0.02, n))                     # seconds, ~50 req/s
    import pandas as pd

    pd.DataFrame({"TIMESTAMP": t, "ContextTokens": rng.integers(50, 3000, n),
                  "GeneratedTokens": rng.integers(10, 400, n)}).to_csv(tmp_path / "tr.csv", index=False)
    (tmp_path / "tr.yaml").write_text(
        "schema_version: 1\nname: tr\nmode: physical\nmodel: llama-3.1-70b\ngpus: [{id: h100, tp: [8]}]\n"
        f"workload:\n  distribution: {{type: trace, path: tr.csv}}\n  arrival_rate: {rate}\n"
        "slo: {ttft_p99_ms: 2000, tpot_p99_ms: 80}\npools: {max_pools: 2, boundaries: [1024, 4096]}\n")
    return tmp_path / "tr.yaml", t


def test_trace_replay_keeps_the_trace_timestamps_and_writes_every_request(tmp_path):
    path, t = _trace_instance(tmp_path)
    inst = load_instance(path)
    out = tmp_path / "req.csv"
    r = simulate(Problem.from_instance(inst), parse_topology("1024:h100x8,4096:h100x8"), 2000, seed=0, arrivals="trace", trace_out=str(out))
    assert r["sim"]["requests"] == 2000 and r["sim"]["arrivals"] == "trace"
    import pandas as pd

    rows = pd.read_csv(out)
    assert len(rows) == 2000 and not rows.duplicated(["pool", "request"]).any()
    # arrivals are the trace's own (seconds -> ms from the first request), pool by pool
    assert np.allclose(np.sort(rows["arrival_ms"].to_numpy()), (t - t[0]) * 1e3, atol=1e-3)
    assert (rows["finish_ms"] >= rows["first_token_ms"]).all() and (rows["first_token_ms"] >= rows["arrival_ms"]).all()


def test_trace_out_never_overwrites_without_force(tmp_path, capsys):
    path, _ = _trace_instance(tmp_path)
    out = tmp_path / "req.csv"
    out.write_text("mine\n")
    args = ["simulate", str(path), "--topology", "4096:h100x8", "--requests", "500", "--trace-out", str(out)]
    assert main(args) == 2
    assert out.read_text() == "mine\n" and "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0 and out.read_text().startswith("pool,request")


def test_trace_replay_needs_a_trace(capsys):
    assert main(["simulate", str(INST / "azure-conv-h100.yaml"), "--topology", "16384:h100x8",
                 "--arrivals", "trace"]) == 2
    assert "must be a trace" in capsys.readouterr().err


def test_a_mixed_range_splits_its_requests_by_share():
    """Members of a mixed range see thinned Poisson streams: their request counts are
    binomial around the shares, and each member's energy per token matches its analytical
    sizing as an unmixed pool's does."""
    inst = load_instance(INST / "azure-conv-h100.yaml")
    topo = parse_topology("16384:h100x8@0.3,16384:b200x4@0.7")
    r = simulate(Problem.from_instance(inst), topo, 40_000, seed=3)
    n = [p["requests"] for p in r["pools"]]
    tot = sum(n)
    assert abs(n[0] - 0.3 * tot) < 4 * (0.3 * 0.7 * tot) ** 0.5
    assert [p["split"] for p in r["pools"]] == [0.3, 0.7]
    assert abs(r["deviation"]["tokens_per_joule"]) < 0.08


def test_trace_replay_splits_a_mixed_range_by_share(tmp_path):
    path, _ = _trace_instance(tmp_path)
    inst = load_instance(path)
    r = simulate(Problem.from_instance(inst), parse_topology("1024:h100x8,4096:h100x8@0.5,4096:h200x8@0.5"), 2000, seed=0, arrivals="trace")
    n = [p["requests"] for p in r["pools"]]
    assert sum(n) == 2000 and n[1] > 0 and n[2] > 0
    assert abs(n[1] - n[2]) < 4 * (0.25 * (n[1] + n[2])) ** 0.5


# --- paper mode: the simulated load is the published model's -----------------------------

AZURE = [(64, .00837), (128, .02817), (256, .06759), (512, .28863), (768, .36427), (1024, .40447),
         (1536, .65687), (2048, .77985), (3072, .86865), (4096, .89821), (6144, .97580), (8192, .999965)]


def hand_short_pool(gamma: float | None, success: float) -> tuple[float, float]:
    """(rate req/s, mean service ms) of the 4096-token pool of the paper's Azure H100 fleet
    at 1000 req/s, by hand from the reference note: total length L uniform within each CDF
    bin, input 0.8 L, output 0.2 L; service (ceil(in / 1024) + out) x (4 + 0.32 (L / 8192) x
    256) ms (ManualProfile, 256 slots at 4096 tokens); with compression (consistent
    accounting) a share ``success`` of L in (4096, gamma 4096] is served with its prompt cut
    to 4096 - out."""
    def svc(i, o):
        return (math.ceil(i / 1024) + o) * (4.0 + 0.32 * ((i + o) / 8192) * 256)

    mass = load = 0.0
    prev_t, prev_f = 0, 0.0
    for t, f in AZURE:
        for lo, hi, compressed in ((prev_t, min(t, 4096), False),
                                   (max(prev_t, 4096), min(t, (gamma or 1) * 4096), True)):
            if hi <= lo or (compressed and gamma is None):
                continue
            dens = (f - prev_f) / (t - prev_t) * (success if compressed else 1.0)
            xs = np.linspace(lo, hi, 4001)[:-1] + (hi - lo) / 8000    # midpoints
            s = [svc(4096 - 0.2 * x, 0.2 * x) if compressed else svc(0.8 * x, 0.2 * x) for x in xs]
            mass += dens * (hi - lo)
            load += dens * (hi - lo) * float(np.mean(s))
        prev_t, prev_f = t, f
    return 1000 * mass, load / mass


@pytest.mark.parametrize("compress", [False, True])
def test_paper_mode_simulated_utilisation_matches_the_analytical(compress):
    """The published model's pool is an M/G/c queue of slots with fixed service times: on a
    long horizon (300,000 requests) every pool's simulated utilisation is the analytical
    load / (instances x slots) within 3 %, and the short pool's load is the hand one."""
    sets = ["workload.distribution.samples=null"]            # exact CDF, as the hand computation
    if compress:
        sets += ["pools.compress.gamma=1.9", "pools.compress.success=0.75"]
    inst = load_instance(INST / "paper-azure-h100.yaml", sets)
    res = simulate(Problem.from_instance(inst), parse_topology("4096:h100x8,65536:h100x8"), 300_000, 0)
    from fleetopt import evaluate

    ana = evaluate(inst, parse_topology("4096:h100x8,65536:h100x8")).to_dict()["pools"]
    lam, es = hand_short_pool(1.9 if compress else None, 0.75)
    short = ana[0]
    assert short["arrival_rate"] == pytest.approx(lam, rel=1e-3)
    assert short["mean_service_ms"] == pytest.approx(es, rel=2e-3)
    assert short["utilization"] == pytest.approx(lam * es / 1e3 / (short["instances"] * short["slots"]), rel=3e-3)
    for sim_p, ana_p in zip(res["pools"], ana):
        assert sim_p["utilization"] == pytest.approx(ana_p["utilization"], rel=0.03)


def test_analytical_ttft_is_never_below_the_simulated_pool_by_pool():
    """The first token ends a step, so a pool's planned P99 TTFT counts at least one step at
    the full batch (the TPOT-capped step): on the MoE plan, whose short-prompt MI300X pool promised
    46 ms (its prefill alone) against 71 ms simulated before, every pool's simulated P99 TTFT
    is within its analytical one (0.5 % histogram resolution)."""
    inst = load_instance(INST / "moe-qwen3-235b.yaml")
    r = simulate(Problem.from_instance(inst),
                 parse_topology("1600:mi300xx4:paged,2304:b200x4:paged,16384:b200x4:paged"), 40_000, seed=3)
    pools = [p for p in r["pools"] if p["requests"]]
    assert len(pools) == 3
    for p in pools:
        assert p["ttft_p99_ms"] <= p["analytical_ttft_p99_ms"] * 1.005, p


def test_paged_capacity_counts_what_each_sequence_holds_beyond_its_tokens():
    """By hand, steps of 1 ms, capacity 1,000 tokens.  Four 200-token prompts (10 outputs)
    arrive at 0.  Holding nothing more, all four fit (4 x 210 <= 1,000): first tokens at 1.
    With 100 tokens more per sequence (a sliding window's span), three fit (3 x 300 + 3 x 10
    <= 1,000 < 4 x 300): the fourth waits for the first to finish at 10 ms, first token at 11."""
    for extra, want in ((0.0, 1.0), (100.0, 11.0)):
        first: dict[int, float] = {}
        spec = PoolSpec(1, 8, 1000.0, "paged", lambda b, kv: (1.0, 100.0), 50.0, extra)
        simulate_pool(spec, [0.0] * 4, [200.0] * 4, [10.0] * 4, [0.0] * 4, 0, 1e9, None,
                      record=lambda rid, ft, t, k, seen=first: seen.update({rid: ft}))
        assert [first[r] for r in range(3)] == pytest.approx([1.0] * 3)
        assert first[3] == pytest.approx(want)
