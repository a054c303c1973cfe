"""Simulate a fleet (a topology or a solved plan) request by request and read it beside the
analytical prediction.

Arrivals: a Poisson process at the instance's rate.  Routing marks each request with its
pool independently of its arrival time, so each pool sees an independent Poisson stream at
rate x its share; each pool's requests are drawn from that pool's own traffic, built by the
same routing code the sizing layer uses (``fleetopt.fleet.Router``), so compress-and-route
and paper mode's sub-CDFs are simulated exactly as they are sized.  Instances, slots (the
TPOT-capped batch) and admission come from the analytical sizing; step times and power
from the same physics, tabulated over batch x held KV (``_tables``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from fleetopt.fleet import GPUS_PER_NODE, PoolChoice, Router, build_workload, evaluate, make_pool_profile
from fleetopt.instance import Instance
from fleetopt.simulate.core import LogHist, PoolSpec, PoolStats, simulate_pool

KV_GRID = 24


def _tables(profile, slots: int, window: float, pf_per_seq: float, pf_ctx: float, host_w_per_gpu: float):
    """(step ms, instance W) at (batch, held KV) as one table lookup: exact in the batch,
    linear in log(held KV) between 24 grid points from 16 tokens to the window."""
    b = np.arange(1, slots + 1, dtype=float)[:, None]
    kv = np.geomspace(16.0, max(window, 32.0), KV_GRID)[None, :]
    bb, kk = np.broadcast_arrays(b, kv)
    op = profile.operating_point(bb.ravel(), kk.ravel(), bb.ravel() * pf_per_seq, np.full(bb.size, pf_ctx))
    gpus = getattr(profile, "gpus_per_instance", profile.tp)
    step = np.asarray(op.step_ms, float).reshape(bb.shape).tolist()
    powr = (gpus * (np.asarray(op.power_per_gpu_w, float) + host_w_per_gpu)).reshape(bb.shape).tolist()
    l0, k = math.log(16.0), (KV_GRID - 1) / (math.log(max(window, 32.0)) - math.log(16.0))
    top = KV_GRID - 1
    log = math.log

    def f(batch: int, held: float):
        i = (batch if batch < slots else slots) - 1
        s, p = step[i], powr[i]
        x = (log(held) - l0) * k if held > 16.0 else 0.0
        j = int(x)
        if j >= top:
            return s[top], p[top]
        a = x - j
        return s[j] + a * (s[j + 1] - s[j]), p[j] + a * (p[j + 1] - p[j])

    return f


def _merge(hs: list[LogHist]) -> LogHist:
    out = LogHist()
    for h in hs:
        out.merge(h)
    return out


def _figures(st_list: list[PoolStats], pue: float) -> dict:
    ttft, tpot = _merge([s.ttft for s in st_list]), _merge([s.tpot for s in st_list])
    measured = sum(s.measured for s in st_list)
    energy = sum(s.energy_j for s in st_list)
    tokens = sum(s.tokens for s in st_list)
    return {"ttft_p50_ms": ttft.quantile(0.5), "ttft_p99_ms": ttft.quantile(0.99),
            "tpot_p50_ms": tpot.quantile(0.5), "tpot_p99_ms": tpot.quantile(0.99),
            "slo_attainment": sum(s.met_both for s in st_list) / measured if measured else float("nan"),
            "tokens_per_joule": tokens / energy if energy else float("nan"),
            "energy_per_query_wh": energy * pue / 3600.0 / measured if measured else float("nan"),
            "preemptions": sum(s.preemptions for s in st_list), "requests_measured": measured}


def simulate(inst: Instance, base: Path, topology: list[PoolChoice], requests: int = 100_000, seed: int = 0,
             catalog=None, instances: list[int] | None = None, warmup: float = 0.1) -> dict:
    """Simulate ``requests`` arrivals on the fleet; ``instances`` overrides the analytical
    instance counts per pool (used by --repair)."""
    from fleetopt.catalog import load_catalog

    t0 = time.perf_counter()
    cat = catalog or load_catalog()
    dist, rate = build_workload(inst, base)
    ana = evaluate(inst, base, topology, catalog=cat, workload=(dist, rate))
    routed = Router(inst, dist).route([p.upper for p in topology])
    host = inst.power.host_w_per_node / GPUS_PER_NODE
    horizon_ms = requests / rate * 1e3
    # warm-up: the larger of the fraction of the horizon and 3 mean service times of the
    # slowest pool (a fleet fills up over about one service time)
    e_s = max((p["mean_service_ms"] for p in ana["pools"] if p["instances"]), default=0.0)
    warm_ms = max(warmup * horizon_ms, 3.0 * e_s)
    warning = None
    if warm_ms > 0.5 * horizon_ms:
        warm_ms = 0.5 * horizon_ms
        need = int(math.ceil(6.0 * e_s * rate / 1e3))
        warning = (f"horizon too short for steady state: {requests} requests span {horizon_ms / 1e3:.1f} s against "
                   f"a mean service time of {e_s / 1e3:.1f} s; use --requests {need} or more")
    seqs = np.random.SeedSequence(seed).spawn(len(topology))
    pools_out, stats = [], []
    for k, (choice, (traffic, window), sized) in enumerate(zip(topology, routed, ana["pools"])):
        rng = np.random.default_rng(seqs[k])
        share = traffic.share
        n_inst = sized["instances"] if instances is None else instances[k]
        lam_ms = rate * share / 1e3
        n = int(rng.poisson(lam_ms * horizon_ms)) if share > 0 else 0
        if n == 0 or n_inst == 0:
            st = PoolStats()
        else:
            arr = np.cumsum(rng.exponential(1.0 / lam_ms, n))
            pick = rng.choice(len(traffic.w), size=n, p=traffic.w / share)
            inp = np.maximum(np.rint(traffic.inp[pick]), 1.0)
            out = np.maximum(np.rint(traffic.out[pick]), 1.0)
            prof = make_pool_profile(inst, choice.gpu, choice.tp, cat, choice.serving)
            w = traffic.w / share
            e_in, e_out = float(w @ traffic.inp), float(w @ traffic.out)
            physical = prof.mode == "physical"
            sp_fn = _tables(prof, sized["slots"], window, e_in / e_out if physical else 0.0,
                            e_in / 2.0 if physical else 0.0, host)
            gpus = getattr(prof, "gpus_per_instance", prof.tp)
            adm = sized["admission"]
            cap = float(prof.kv_capacity_tokens()) if adm == "paged" else math.inf
            spec = PoolSpec(int(n_inst), int(sized["slots"]), cap, adm, sp_fn,
                            gpus * (prof.idle_power_w() + host))
            pre = np.asarray(prof.prefill_ms(inp), float)
            st = simulate_pool(spec, arr.tolist(), inp.tolist(), out.tolist(), pre.tolist(),
                               int(np.searchsorted(arr, warm_ms)),
                               inst.slo.ttft_p99_ms, inst.slo.tpot_p99_ms)
        stats.append(st)
        f = _figures([st], inst.power.pue)
        util = st.busy_slot_ms / (n_inst * max(sized["slots"], 1) * st.window_ms) if st.window_ms and n_inst else 0.0
        pools_out.append({"lo_tokens": sized["lo_tokens"], "hi_tokens": sized["hi_tokens"], "gpu": sized["gpu"],
                          "tp": sized["tp"], "instances": int(n_inst), "requests": n, **f, "utilization": util,
                          "analytical_ttft_p99_ms": sized["ttft_p99_ms"], "analytical_tpot_p99_ms": sized["tpot_p99_ms"],
                          "analytical_instances": sized["instances"]})
    fleet = _figures(stats, inst.power.pue)
    fleet["instances"] = sum(p["instances"] for p in pools_out)
    secs = time.perf_counter() - t0
    total = sum(p["requests"] for p in pools_out)
    af = ana["fleet"]
    analytical = {"ttft_p99_ms": max(p["ttft_p99_ms"] for p in ana["pools"]),
                  "tpot_p99_ms": max(p["tpot_p99_ms"] for p in ana["pools"]),
                  "tokens_per_joule": af["tokens_per_joule"], "energy_per_query_wh": af["energy_per_query_wh"],
                  "instances": af["instances"]}
    deviation = {k: (fleet[k] / v - 1.0) if v else None for k, v in analytical.items()
                 if k in fleet and isinstance(fleet[k], (int, float)) and math.isfinite(fleet[k])}
    return {"instance": inst.name, "topology": ",".join(p.spec() for p in topology), "pools": pools_out,
            "fleet": fleet, "analytical": analytical, "deviation": deviation,
            "sim": {"requests": total, "seconds": secs, "requests_per_second": total / secs if secs else None,
                    "seed": seed, "warmup_ms": warm_ms, **({"warning": warning} if warning else {})}}


def repair(inst: Instance, base: Path, topology: list[PoolChoice], requests: int, seed: int, catalog=None,
           max_rounds: int = 30) -> dict:
    """Add instances to every pool whose simulated P99 TTFT or TPOT misses the SLO (about 5 %
    at a time, at least one) until all hold; returns the last simulation with ``repair``."""
    res = simulate(inst, base, topology, requests, seed, catalog)
    counts = [p["instances"] for p in res["pools"]]
    start = list(counts)
    rounds = 0
    while rounds < max_rounds:
        bad = [k for k, p in enumerate(res["pools"]) if p["requests"] and _misses(inst, p)]
        if not bad:
            break
        for k in bad:
            counts[k] += max(1, math.ceil(0.05 * counts[k]))
        rounds += 1
        res = simulate(inst, base, topology, requests, seed, catalog, instances=counts)
    res["repair"] = {"rounds": rounds, "instances_before": start, "instances_after": counts,
                     "holds": not any(p["requests"] and _misses(inst, p) for p in res["pools"])}
    return res


def _misses(inst: Instance, p: dict) -> bool:
    tp = inst.slo.tpot_p99_ms
    return p["ttft_p99_ms"] > inst.slo.ttft_p99_ms or (tp is not None and p["tpot_p99_ms"] > tp)
