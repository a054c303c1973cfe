"""Simulate a fleet (a topology or a solved plan) request by request and read it beside the
analytical prediction.

Paper mode is simulated as the published model sizes it: each request holds a slot for
its service time (ceil(l_in / chunk) + l_out) x iter(n_slots, l_in + l_out), whatever the
batch (``simulate_pool``'s ``service_ms``), power P(b) at the instance's actual batch.
Physical mode runs continuous batching: the step time follows the actual batch and held KV.

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

from fleetopt import FleetoptError
from fleetopt.fleet import GPUS_PER_NODE, PoolChoice, Router, build_workload, evaluate, groups, make_pool_profile
from fleetopt.instance import Instance
from fleetopt.simulate.core import LogHist, PoolSpec, PoolStats, simulate_pool

KV_GRID = 24
MAX_INSTANCES = 100_000


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


def _at_kv(step_and_power, kv: float):
    """The step function with the held KV fixed at ``kv`` (paper mode: the virtual clock
    counts milliseconds, not tokens, so the held KV is not tracked)."""
    return lambda batch, _held: step_and_power(batch, kv)


def _merge(hs: list[LogHist]) -> LogHist:
    out = LogHist()
    for h in hs:
        out.merge(h)
    return out


def _figures(st_list: list[PoolStats], pue: float) -> dict:
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


def _replayed(inst: Instance, base: Path, topology: list[PoolChoice], requests: int, rate: float, seed: int = 0):
    """Per pool (arrival ms, input, output) from the instance's trace: its own timestamps
    (scaled in time to the instance's arrival rate when that differs from the trace's),
    the first ``requests`` requests, each routed by the instance's key (and, in a mixed
    range, to a member drawn by share with the seeded generator)."""
    from fleetopt.fleet import _resolve, clamp_to_window
    from fleetopt.workload import read_trace, routing_keys, trace_rate

    d = inst.workload.distribution
    if d.type != "trace" or not d.time_column:
        raise FleetoptError("--arrivals trace: the instance's workload must be a trace with a time column")
    if inst.pools.compress is not None:
        raise FleetoptError("--arrivals trace: compress-and-route is simulated with Poisson arrivals only")
    inp, out, t = read_trace(_resolve(base, d.path), d.input_column, d.output_column, d.time_column)
    order = np.argsort(t, kind="stable")[:requests]
    inp, out, t = inp[order], out[order], t[order]
    own = inst.workload.arrival_rate == "trace" or len(t) < 2 or not math.isfinite(trace_rate(t))
    t_ms = (t - t[0]) * 1e3 * (1.0 if own else trace_rate(t) / rate)
    k_all, out = routing_keys(inp, out, inst.workload.routing_key, inst.workload.max_output_tokens)
    grp = groups(topology)
    uppers = np.array([up for up, _ in grp], float)
    pool = np.minimum(np.searchsorted(uppers, k_all, side="left"), len(uppers) - 1)
    member = np.zeros(len(k_all), int)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(len(topology) + 1)[-1])
    for g, (_, idx) in enumerate(grp):            # a mixed range: each request to a member at random, by share
        if len(idx) > 1:
            sel = np.flatnonzero(pool == g)
            member[sel] = rng.choice(len(idx), size=sel.size, p=[topology[k].share for k in idx])
    out_lists = []
    for g, (hi, idx) in enumerate(grp):
        for m in range(len(idx)):
            sel = (pool == g) & (member == m)
            i_, o_ = inp[sel].astype(float), out[sel].astype(float)
            if g == len(grp) - 1:            # the last pool takes longer requests, clamped as sized
                i_, o_ = clamp_to_window(i_, o_, hi)
            out_lists.append((t_ms[sel], np.maximum(i_, 1.0), np.maximum(o_, 1.0)))
    return out_lists


class _TraceWriter:
    """--trace-out: one CSV row per finished request, written to a temporary file beside
    the target (permissions as any new file) and renamed into place when the simulation
    ends; on any failure (a full disk included) or interrupt the temporary is removed and
    the target left as it was.  Temporaries of killed runs are removed on the next."""

    def __init__(self, path: str | None, force: bool):
        self.path = Path(path) if path else None
        self.f = None
        if self.path is None:
            return
        import csv
        import os

        from fleetopt.files import clean_stale, os_error, temp_name

        if self.path.is_dir():
            raise FleetoptError(f"--trace-out: '{self.path}' is a folder")
        if self.path.exists() and not force:
            raise FleetoptError(f"--trace-out: {self.path} exists; pass --force to replace it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(self.path.parent, self.path.name)
            self.tmp = self.path.parent / temp_name(self.path.name)
            self.f = open(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", newline="")
            self.w = csv.writer(self.f)
            self.w.writerow(["pool", "request", "instance", "arrival_ms", "first_token_ms", "finish_ms",
                             "input_tokens", "output_tokens", "warmup"])
        except OSError as e:
            self._discard()
            raise os_error(e, "--trace-out", self.path) from None

    def recorder(self, pool: int, arr, inp, out, warm: int):
        if self.path is None:
            return None
        w = self.w.writerow

        def rec(rid, first, fin, k):
            w([pool, rid, k, f"{arr[rid]:.3f}", f"{first:.3f}", f"{fin:.3f}", int(inp[rid]), int(out[rid]),
               int(rid < warm)])
        return rec

    def _discard(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None
        if getattr(self, "tmp", None) is not None:
            try:
                Path(self.tmp).unlink(missing_ok=True)
            except OSError:                 # a read-only folder: nothing was created there
                pass

    def close(self, ok: bool) -> None:
        """Rename the finished trace into place (``ok``) or remove it."""
        if self.path is None:
            return
        import os

        from fleetopt.files import os_error

        if not ok:
            self._discard()
            return
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            self.f = None
            os.replace(self.tmp, self.path)
        except OSError as e:
            self._discard()
            raise os_error(e, "--trace-out", self.path) from None


def simulate(inst: Instance, base: Path, topology: list[PoolChoice], requests: int = 100_000, seed: int = 0,
             catalog=None, instances: list[int] | None = None, warmup: float = 0.1, arrivals: str = "poisson",
             trace_out: str | None = None, force: bool = False, prefill_batch_tokens: int | None = None) -> dict:
    """Simulate ``requests`` arrivals on the fleet (a Poisson process, or the instance's
    trace replayed with ``arrivals="trace"``); ``instances`` overrides the analytical
    instance counts per pool (used by --repair); ``prefill_batch_tokens`` lets the prefill
    instances of split pools batch waiting prompts up to that many tokens."""
    from fleetopt.console import bar

    writer = _TraceWriter(trace_out, force)
    try:
        with bar(requests, "simulating", "req") as progress:
            res = _simulate(inst, base, topology, requests, seed, catalog, instances, warmup, arrivals, writer,
                            prefill_batch_tokens, progress.update)
    except OSError as e:                    # the trace's rows could not be written (a full disk)
        from fleetopt.files import os_error

        writer.close(False)
        if trace_out is None:
            raise
        raise os_error(e, "--trace-out", trace_out) from None
    except BaseException:
        writer.close(False)
        raise
    writer.close(True)
    return res


def _simulate(inst, base, topology, requests, seed, catalog, instances, warmup, arrivals, writer,
              prefill_batch_tokens=None, tick=None) -> dict:
    from fleetopt.catalog import load_catalog

    t0 = time.perf_counter()
    cat = catalog or load_catalog()
    dist, rate = build_workload(inst, base)
    ana = evaluate(inst, base, topology, catalog=cat, workload=(dist, rate))
    n_total = sum(p["instances"] for p in ana["pools"]) if instances is None else sum(instances)
    if n_total > MAX_INSTANCES:
        raise FleetoptError(f"simulate: the fleet has {n_total} instances, more than the {MAX_INSTANCES} the "
                            f"simulator holds (arrival rate {rate:.4g} req/s)")
    routed = [(t, w) for _, t, w in Router(inst, dist).route_members(topology)]
    host = inst.power.host_w_per_node / GPUS_PER_NODE
    if arrivals not in ("poisson", "trace"):
        raise FleetoptError(f"--arrivals: must be poisson or trace, got '{arrivals}'")
    replay = _replayed(inst, base, topology, requests, rate, seed) if arrivals == "trace" else None
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
            from fleetopt.simulate.disagg import simulate_split

            if n and replay is None:
                arr = np.cumsum(rng.exponential(1.0 / lam_ms, n))
                pick = rng.choice(len(traffic.w), size=n, p=traffic.w / share)
                inp = np.maximum(np.rint(traffic.inp[pick]), 1.0)
                out = np.maximum(np.rint(traffic.out[pick]), 1.0)
            phases, st = (simulate_split(inst, cat, choice, np.asarray(arr, float), np.asarray(inp, float),
                                         np.asarray(out, float), window, (rows[0], rows[1]), warm_ms, host,
                                         writer.recorder(k, arr, inp, out, int(np.searchsorted(arr, warm_ms))),
                                         prefill_batch_tokens)
                          if n else ({}, PoolStats()))
            if tick is not None:
                tick(n)
            stats.append(st)
            f = _figures([st], inst.power.pue)
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
            warm = int(np.searchsorted(arr, warm_ms))
            svc = None
            if not physical:        # the published model: each request holds its slot for its service time
                svc = (np.asarray(prof.service_ms(inp, out, max(int(sized["slots"]), 1)), float)
                       * np.ones(len(inp))).tolist()
                kv = float(w @ (traffic.out * (traffic.inp + traffic.out / 2.0))) / max(e_out, 1e-12)
                spec.step_and_power = _at_kv(sp_fn, kv)       # power at the pool's mean KV
            st = simulate_pool(spec, arr.tolist(), inp.tolist(), out.tolist(), pre.tolist(), warm,
                               inst.slo.ttft_p99_ms, inst.slo.tpot_p99_ms, writer.recorder(k, arr, inp, out, warm),
                               service_ms=svc, tick=tick)
        stats.append(st)
        f = _figures([st], inst.power.pue)
        util = st.busy_slot_ms / (n_inst * max(sized["slots"], 1) * st.window_ms) if st.window_ms and n_inst else 0.0
        pools_out.append({"lo_tokens": sized["lo_tokens"], "hi_tokens": sized["hi_tokens"], "gpu": sized["gpu"],
                          "tp": sized["tp"], "split": choice.share, "instances": int(n_inst), "requests": n, **f, "utilization": util,
                          "analytical_ttft_p99_ms": sized["ttft_p99_ms"], "analytical_tpot_p99_ms": sized["tpot_p99_ms"],
                          "analytical_instances": sized["instances"]})
    if split:                                          # one key set for tables and CSV
        keys = list(dict.fromkeys(k for p in pools_out for k in p))
        pools_out = [{k: p.get(k, "both" if k == "phase" else None) for k in keys} for p in pools_out]
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
                    "seed": seed, "arrivals": arrivals, "warmup_ms": warm_ms, **({"warning": warning} if warning else {})}}


def _rows_per_choice(topology: list[PoolChoice], rows: list[dict]) -> list[list[dict]]:
    """The analytical rows of each topology entry: one, or two (prefill, decode) for a split pool."""
    out, k = [], 0
    for c in topology:
        w = 2 if c.prefill_gpu is not None else 1
        out.append(rows[k:k + w])
        k += w
    return out


def repair(inst: Instance, base: Path, topology: list[PoolChoice], requests: int, seed: int, catalog=None,
           max_rounds: int = 30) -> dict:
    """Add instances to every pool whose simulated P99 TTFT or TPOT misses the SLO (about 5 %
    at a time, at least one) until all hold; returns the last simulation with ``repair``."""
    res = simulate(inst, base, topology, requests, seed, catalog)
    counts = [p["instances"] for p in res["pools"]]
    start = list(counts)
    rounds = 0
    while rounds < max_rounds:
        bad = [k for k, p in enumerate(res["pools"]) if p["requests"] and misses(inst, p)]
        if not bad:
            break
        for k in bad:
            counts[k] += max(1, math.ceil(0.05 * counts[k]))
        rounds += 1
        res = simulate(inst, base, topology, requests, seed, catalog, instances=counts)
    res["repair"] = {"rounds": rounds, "instances_before": start, "instances_after": counts,
                     "holds": not any(p["requests"] and misses(inst, p) for p in res["pools"])}
    return res


def misses(inst: Instance, p: dict) -> bool:
    """Whether a simulated pool misses the P99 TTFT or TPOT SLO."""
    tp = inst.slo.tpot_p99_ms
    return p["ttft_p99_ms"] > inst.slo.ttft_p99_ms or (tp is not None and p["tpot_p99_ms"] > tp)
