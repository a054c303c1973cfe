"""Simulate a fleet (a topology or a solved plan) request by request and read it beside the
analytical prediction.

Paper mode is simulated as the published model sizes it: each request holds a slot for
its service time (ceil(l_in / chunk) + l_out) x iter(n_slots, l_in + l_out), whatever the
batch (``simulate_pool``'s ``service_ms``), power P(b) at the instance's actual batch.
Physical mode runs continuous batching: the step time follows the actual batch and held KV.

Arrivals: a Poisson process at the instance's rate.  Routing marks each request with its
pool independently of its arrival time, so each pool sees an independent Poisson stream at
rate x its share; each pool's requests are drawn from that pool's own traffic, built by the
same routing code the sizing layer uses (``fleetopt.routing.Router``), so compress-and-route
and paper mode's sub-CDFs are simulated exactly as they are sized.  Instances, slots (the
TPOT-capped batch) and admission come from the analytical sizing; step times and power
from the same physics, tabulated over batch x held KV (``fleetopt.simulator.tables``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fleetopt import console, lazy
from fleetopt.atomic import os_error
from fleetopt.errors import FleetoptError
from fleetopt.evaluation import evaluate
from fleetopt.physics.kv import paged_limits
from fleetopt.plan import Plan
from fleetopt.problem import Problem
from fleetopt.simulator.core import PoolSpec, PoolStats, simulate_pool
from fleetopt.simulator.loghist import LogHist
from fleetopt.simulator.tables import at_kv, step_tables
from fleetopt.simulator.trace import TraceWriter, replayed
from fleetopt.sizing import Slo
from fleetopt.topology import PoolChoice, topology_spec

MAX_INSTANCES = 100_000
"""The largest fleet the simulator holds."""

SPLIT_POOL = "fleetopt.simulator.disagg:simulate_split"
"""Simulates a split (prefill/decode) pool; loaded when a topology has one."""


def _merge(hs: list[LogHist]) -> LogHist:
    """One histogram of several."""
    out = LogHist()
    for h in hs:
        out.merge(h)
    return out


def _figures(st_list: list[PoolStats], pue: float) -> dict[str, Any]:
    """P50/P99 TTFT, TPOT, end-to-end and wait, SLO attainment, tokens per joule, Wh per
    query (x PUE), preemptions: of one pool's statistics or the fleet's."""
    ttft, tpot = _merge([s.ttft for s in st_list]), _merge([s.tpot for s in st_list])
    e2e, wait = _merge([s.e2e for s in st_list]), _merge([s.wait for s in st_list])
    measured = sum(s.measured for s in st_list)
    energy = sum(s.energy_j for s in st_list)
    tokens = sum(s.tokens for s in st_list)
    return {"ttft_p50_ms": ttft.quantile(0.5), "ttft_p99_ms": ttft.quantile(0.99),
            "tpot_p50_ms": tpot.quantile(0.5), "tpot_p99_ms": tpot.quantile(0.99),
            "e2e_p50_ms": e2e.quantile(0.5), "e2e_p99_ms": e2e.quantile(0.99),
            "queue_wait_p99_ms": wait.quantile(0.99),
            "slo_attainment": sum(s.met_both for s in st_list) / measured if measured else float("nan"),
            "tokens_per_joule": tokens / energy if energy else float("nan"),
            "energy_per_query_wh": energy * pue / 3600.0 / measured if measured else float("nan"),
            "preemptions": sum(s.preemptions for s in st_list), "requests_measured": measured}


def simulate(problem: Problem, topology: Sequence[PoolChoice], requests: int = 100_000, seed: int = 0,
             instances: list[int] | None = None, warmup: float = 0.1, arrivals: str = "poisson",
             trace_out: str | None = None, force: bool = False, prefill_batch_tokens: int | None = None
             ) -> dict[str, Any]:
    """Simulate ``requests`` arrivals on the fleet (a Poisson process, or the instance's
    trace replayed with ``arrivals="trace"``); ``instances`` overrides the analytical
    instance counts per pool (used by --repair); ``prefill_batch_tokens`` lets the prefill
    instances of split pools batch waiting prompts up to that many tokens."""
    writer = TraceWriter(trace_out, force)
    try:
        with console.bar(requests, "simulating", "req") as progress:
            res = _simulate(problem, topology, requests, seed, instances, warmup, arrivals, writer,
                            prefill_batch_tokens, progress.update)
    except OSError as e:                    # the trace's rows could not be written (a full disk)
        writer.close(False)
        if trace_out is None:
            raise
        raise os_error(e, "--trace-out", trace_out) from None
    except BaseException:
        writer.close(False)
        raise
    writer.close(True)
    return res


def _simulate(problem: Problem, topology: Sequence[PoolChoice], requests: int, seed: int,
              instances: list[int] | None, warmup: float, arrivals: str, writer: TraceWriter,
              prefill_batch_tokens: int | None = None, tick: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``simulate`` with its trace writer open (module docstring); ``tick(n)`` counts
    simulated arrivals (a progress bar).  Per pool of the analytical plan: its routed
    traffic sampled (Poisson arrivals at share x rate, or the trace replayed), the warm-up
    max(``warmup`` x horizon, 3 mean service times) left out of the figures, the pool run
    (``simulate_pool``, or a split pool's prefill queue, transfers and decode pool), its
    figures beside the analytical ones; then the fleet's figures over every pool and their
    relative deviations (simulated / analytical - 1)."""
    t0 = time.perf_counter()
    rate = problem.rate
    ana = evaluate(problem, topology).to_dict()
    n_total = sum(p["instances"] for p in ana["pools"]) if instances is None else sum(instances)
    if n_total > MAX_INSTANCES:
        raise FleetoptError(f"simulate: the fleet has {n_total} instances, more than the {MAX_INSTANCES} the "
                            f"simulator holds (arrival rate {rate:.4g} req/s)")
    routed = [(t, w) for _, t, w in problem.router.route_members(topology)]
    host = problem.power.host_w_per_gpu
    slo, pue = problem.slo, problem.power.pue
    if arrivals not in ("poisson", "trace"):
        raise FleetoptError(f"--arrivals: must be poisson or trace, got '{arrivals}'")
    replay = replayed(problem, topology, requests, rate, seed) if arrivals == "trace" else None
    horizon_ms = requests / rate * 1e3
    if replay is not None:
        horizon_ms = max((float(a[-1]) for a, _, _ in replay if len(a)), default=0.0)
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
    split = any(c.prefill_gpu is not None for c in topology)
    if split and instances is not None:
        raise FleetoptError("--repair: not available for split (pd) pools")
    ana_rows = _rows_per_choice(topology, ana["pools"])
    for k, (choice, (traffic, window), rows) in enumerate(zip(topology, routed, ana_rows)):
        sized = rows[-1]
        rng = np.random.default_rng(seqs[k])
        share = traffic.share
        n_inst = (sum(r["instances"] for r in rows) if instances is None else instances[k])
        lam_ms = rate * share * choice.share / 1e3      # a member of a mixed range: a thinned Poisson stream
        if replay is not None:
            arr, inp, out = replay[k]
            n = len(arr)
        else:
            n = int(rng.poisson(lam_ms * horizon_ms)) if share > 0 else 0
        if choice.prefill_gpu is not None:              # a split pool: prefill -> KV transfer -> decode
            if n and replay is None:
                arr = np.cumsum(rng.exponential(1.0 / lam_ms, n))
                pick = rng.choice(len(traffic.w), size=n, p=traffic.w / share)
                inp = np.maximum(np.rint(traffic.inp[pick]), 1.0)
                out = np.maximum(np.rint(traffic.out[pick]), 1.0)
            phases, st = (lazy.load(SPLIT_POOL)(problem, choice, np.asarray(arr, float), np.asarray(inp, float),
                                         np.asarray(out, float), window, (rows[0], rows[1]), warm_ms, host,
                                         writer.recorder(k, arr, inp, out, int(np.searchsorted(arr, warm_ms))),
                                         prefill_batch_tokens)
                          if n else ({}, PoolStats()))
            if tick is not None:
                tick(n)
            stats.append(st)
            f = _figures([st], pue)
            pools_out.append({"lo_tokens": sized["lo_tokens"], "hi_tokens": sized["hi_tokens"],
                              "gpu": f"pd({rows[0]['gpu']}x{rows[0]['tp']}/{sized['gpu']}x{sized['tp']})",
                              "tp": sized["tp"], "split": choice.share, "instances": int(n_inst), "requests": n, **f,
                              "utilization": phases.get("decode_utilization", 0.0),
                              "analytical_ttft_p99_ms": sized["ttft_p99_ms"],
                              "analytical_tpot_p99_ms": sized["tpot_p99_ms"], "analytical_instances": int(n_inst),
                              "phase": "split", **phases})
            continue
        if n == 0 or n_inst == 0:
            st = PoolStats()
        else:
            if replay is None:
                arr = np.cumsum(rng.exponential(1.0 / lam_ms, n))
                pick = rng.choice(len(traffic.w), size=n, p=traffic.w / share)
                inp = np.maximum(np.rint(traffic.inp[pick]), 1.0)
                out = np.maximum(np.rint(traffic.out[pick]), 1.0)
            prof = problem.profile(choice.gpu, choice.tp, choice.serving)
            w = traffic.w / share
            e_in, e_out = float(w @ traffic.inp), float(w @ traffic.out)
            physical = prof.chunked_prefill
            sp_fn = step_tables(prof, sized["slots"], window, e_in / e_out if physical else 0.0,
                            e_in / 2.0 if physical else 0.0, host)
            gpus = prof.gpus_per_instance
            adm = sized["admission"]
            cap, kv_seq = math.inf, 0.0
            if adm == "paged":      # physical: sliding-window layers hold at most their window
                cap = float(prof.kv_capacity_tokens())
                cap, kv_seq = paged_limits(problem.model, cap) if physical else (cap, 0.0)
            spec = PoolSpec(int(n_inst), int(sized["slots"]), cap, adm, sp_fn,
                            gpus * (prof.idle_power_w() + host), kv_seq)
            pre = np.asarray(prof.prefill_ms(inp), float)
            warm = int(np.searchsorted(arr, warm_ms))
            svc = None
            if not physical:        # the published model: each request holds its slot for its service time
                svc = (np.asarray(prof.service_ms(inp, out, max(int(sized["slots"]), 1)), float)
                       * np.ones(len(inp))).tolist()
                kv = float(w @ (traffic.out * (traffic.inp + traffic.out / 2.0))) / max(e_out, 1e-12)
                spec.step_and_power = at_kv(sp_fn, kv)       # power at the pool's mean KV
            st = simulate_pool(spec, arr.tolist(), inp.tolist(), out.tolist(), pre.tolist(), warm,
                               slo.ttft_p99_ms, slo.tpot_p99_ms, writer.recorder(k, arr, inp, out, warm),
                               service_ms=svc, tick=tick)
        stats.append(st)
        f = _figures([st], pue)
        util = st.busy_slot_ms / (n_inst * max(sized["slots"], 1) * st.window_ms) if st.window_ms and n_inst else 0.0
        pools_out.append({"lo_tokens": sized["lo_tokens"], "hi_tokens": sized["hi_tokens"], "gpu": sized["gpu"],
                          "tp": sized["tp"], "split": choice.share, "instances": int(n_inst), "requests": n, **f,
                          "utilization": util, "analytical_ttft_p99_ms": sized["ttft_p99_ms"],
                          "analytical_tpot_p99_ms": sized["tpot_p99_ms"],
                          "analytical_instances": sized["instances"]})
    if split:                                          # one key set for tables and CSV
        keys = list(dict.fromkeys(k for p in pools_out for k in p))
        pools_out = [{k: p.get(k, "both" if k == "phase" else None) for k in keys} for p in pools_out]
    fleet = _figures(stats, pue)
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
    return {"instance": problem.name, "topology": topology_spec(topology), "pools": pools_out,
            "fleet": fleet, "analytical": analytical, "deviation": deviation,
            "sim": {"requests": total, "seconds": secs, "requests_per_second": total / secs if secs else None,
                    "seed": seed, "arrivals": arrivals, "warmup_ms": warm_ms,
                    **({"warning": warning} if warning else {})}}


def _rows_per_choice(topology: Sequence[PoolChoice], rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The analytical rows of each topology entry: one, or two (prefill, decode) for a split pool."""
    out, k = [], 0
    for c in topology:
        w = 2 if c.prefill_gpu is not None else 1
        out.append(rows[k:k + w])
        k += w
    return out


def repair(problem: Problem, topology: Sequence[PoolChoice], requests: int, seed: int,
           max_rounds: int = 30) -> dict[str, Any]:
    """Add instances to every pool whose simulated P99 TTFT or TPOT misses the SLO (about 5 %
    at a time, at least one) until all hold; returns the last simulation with ``repair``."""
    res = simulate(problem, topology, requests, seed)
    counts = [p["instances"] for p in res["pools"]]
    start = list(counts)
    rounds = 0
    while rounds < max_rounds:
        bad = [k for k, p in enumerate(res["pools"]) if p["requests"] and misses(problem.slo, p)]
        if not bad:
            break
        for k in bad:
            counts[k] += max(1, math.ceil(0.05 * counts[k]))
        rounds += 1
        res = simulate(problem, topology, requests, seed, instances=counts)
    res["repair"] = {"rounds": rounds, "instances_before": start, "instances_after": counts,
                     "holds": not any(p["requests"] and misses(problem.slo, p) for p in res["pools"])}
    return res


def misses(slo: Slo, p: dict[str, Any]) -> bool:
    """Whether a simulated pool misses the P99 TTFT or TPOT SLO."""
    tp = slo.tpot_p99_ms
    return bool(p["ttft_p99_ms"] > slo.ttft_p99_ms or (tp is not None and p["tpot_p99_ms"] > tp))


def verify(problem: Problem, plan: Plan, requests: int = 100_000, seed: int = 0,
           fix: bool = False) -> dict[str, Any]:
    """The ``verification`` section of a plan (``solve --verify``): the plan simulated
    (``fix``: repaired until its SLOs hold), its fleet and pools, the deviation from the
    analytical figures, and whether an SLO is missed."""
    v = (repair if fix else simulate)(problem, plan.topology, requests, seed)
    missed = [p for p in v["pools"] if p["requests"] and misses(problem.slo, p)]
    return {"fleet": v["fleet"], "pools": v["pools"], "deviation": v["deviation"], "sim": v["sim"],
            "slo_missed": bool(missed), **({"repair": v["repair"]} if fix else {})}
