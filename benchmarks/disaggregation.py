"""Disaggregated prefill/decode serving: where it wins and where it does not.

    python benchmarks/disaggregation.py      # writes benchmarks/results/disaggregation.md

1. The shipped workloads (chat: azure-conv-h100, code: azure-code, long-document
   summarisation: longctx-summarization), each with its own GPU catalog, model and SLOs:
   the best aggregated plan (``pools.disaggregation: off``) against the combined optimum
   (``allow``), with per-phase power caps offered, and with the prefill priced by the
   profile's separately fitted ``prefill_ms`` instead of the step model (sensitivity).
2. Splitwise's setup as closely as the catalog allows: Llama-3.1-70B (for Llama-2-70B: the
   same layers, width and grouped-query attention; the traces hold requests longer than
   Llama-2's 4,096-token context, which the planner refuses) on 8-GPU H100 and A100
   instances, the Azure conversation and code traces, one pool, the same facility power
   (iso-power throughput, ``objective: max_throughput``) and the cost of serving the
   trace's rate (``min_cost``).
3. DistServe's mechanism: ShareGPT on A100 (Llama-3.1-70B, TP 4 or 8), TTFT 2.5 s, TPOT
   tightened from 150 to 25 ms; GPUs needed (``min_cost`` at one price per GPU), so the
   ratio is DistServe's per-GPU goodput ratio.
4. The simulator on the split plans of table 1 (P99s and tokens per joule beside the
   sizing), and with the prefill instances batching waiting prompts.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = [("chat", "azure-conv-h100"), ("code", "azure-code"), ("long-document summarisation",
                                                                    "longctx-summarization")]


def _solve(name: str, sets: list[str]):
    import fleetopt

    inst = fleetopt.load_instance(ROOT / "instances" / f"{name}.yaml", sets)
    t0 = time.perf_counter()
    r = fleetopt.solve(inst).to_dict()
    return r, time.perf_counter() - t0


def _where(r: dict) -> str:
    """Which phase runs where: each range of the plan, split or aggregated."""
    out, lo = [], 0
    for p in r["pools"]:
        if p.get("phase") == "decode":
            continue
        hi = int(p["hi_tokens"])
        if p.get("phase") == "prefill":
            dec = next(q for q in r["pools"] if q.get("phase") == "decode" and q["hi_tokens"] == p["hi_tokens"])
            out.append(f"({lo}, {hi}]: prefill {p['instances']} x {p['gpu']}x{p['tp']}, "
                       f"decode {dec['instances']} x {dec['gpu']}x{dec['tp']}")
        else:
            out.append(f"({lo}, {hi}]: {p['instances']} x {p['gpu']}x{p['tp']}")
        lo = hi
    return "; ".join(out)


def _md(rows: list[dict]) -> str:
    from fleetopt.render import _fmt

    rows = [{k: (round(v, 2) + 0.0 if isinstance(v, float) and "%" in k else v) for k, v in r.items()} for r in rows]
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if isinstance(rows[0][c], (int, float)) else "---"
                                                          for c in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def workloads() -> list[dict]:
    import fleetopt.disagg.prefill as dg

    rows = []
    caps = "pools.phase_power_caps=[1.0, 0.8, 0.6]"
    for label, name in WORKLOADS:
        agg, t_off = _solve(name, ["pools.disaggregation=off"])
        plan, t_on = _solve(name, ["pools.disaggregation=allow"])
        only, _ = _solve(name, ["pools.disaggregation=only"])
        capped, _ = _solve(name, ["pools.disaggregation=allow", caps])
        dg.PREFILL_TIME_MODEL = "prefill_ms"
        try:
            sens, _ = _solve(name, ["pools.disaggregation=only"])
        finally:
            dg.PREFILL_TIME_MODEL = "steps"
        fa, fp = agg["fleet"], plan["fleet"]
        ca = capped["baselines"]["aggregated"]
        pct = lambda a, b: 100 * (a / b - 1)  # noqa: E731
        rows.append({"workload": label, "instance": name, "aggregated tok/J": fa["tokens_per_joule"],
                     "aggregated GPUs": fa["gpus"], "allow tok/J": fp["tokens_per_joule"], "allow GPUs": fp["gpus"],
                     "gain %": pct(fp["tokens_per_joule"], fa["tokens_per_joule"]),
                     "cost %": pct(fp["cost_per_hour"], fa["cost_per_hour"]),
                     "only: gain %": pct(only["fleet"]["tokens_per_joule"], fa["tokens_per_joule"]),
                     "caps: aggregated tok/J": ca["tokens_per_joule"],
                     "caps: allow tok/J": capped["fleet"]["tokens_per_joule"],
                     "caps: gain %": pct(capped["fleet"]["tokens_per_joule"], ca["tokens_per_joule"]),
                     "only, prefill_ms pricing: gain %": pct(sens["fleet"]["tokens_per_joule"], fa["tokens_per_joule"]),
                     "solve s (off / allow)": f"{t_off:.2f} / {t_on:.2f}",
                     "aggregated plan": agg["topology"], "plan (allow)": _where(plan),
                     "plan with caps": capped["topology"], "aggregated plan with caps": ca["topology"],
                     "_plan": plan})
    return rows


SPLITWISE = {
    "Baseline-A100": (["gpus=[{id: a100, tp: [8]}]"], "off", "[1.0]"),
    "Baseline-H100": (["gpus=[{id: h100, tp: [8]}]"], "off", "[1.0]"),
    "Splitwise-AA": (["gpus=[{id: a100, tp: [8]}]"], "only", "[1.0]"),
    "Splitwise-HH": (["gpus=[{id: h100, tp: [8]}]"], "only", "[1.0]"),
    "Splitwise-HA (each phase H100 or A100)": (["gpus=[{id: h100, tp: [8]}, {id: a100, tp: [8]}]"], "only", "[1.0]"),
    "Splitwise-HHcap (each phase 1, 0.7 or 0.5 x TDP)": (["gpus=[{id: h100, tp: [8]}]"], "only", "[1.0, 0.7, 0.5]"),
    "fleetopt allow (H100, A100, those caps)": (["gpus=[{id: h100, tp: [8]}, {id: a100, tp: [8]}]"], "allow",
                                                "[1.0, 0.7, 0.5]"),
}
CAP_MW = 0.5


def _capped_baseline_rate(name: str, sets: list[str]) -> tuple[float, str, dict]:
    """Largest rate (to 0.1 %) at which one aggregated H100x8 pool, capped at 1, 0.7 or 0.5 x
    TDP (the best), fits the facility power (``evaluate``, as max_throughput bisects)."""
    import fleetopt
    from fleetopt.errors import InfeasibleError
    from fleetopt.evaluation import evaluate
    from fleetopt.problem import Problem
    from fleetopt.topology import parse_topology

    problem = Problem.from_instance(fleetopt.load_instance(ROOT / "instances" / f"{name}.yaml", sets))
    best = (0.0, "", {})
    for cap in (700, 490, 350):
        topo = parse_topology("16384:h100x8:paged" + (f":cap{cap}" if cap < 700 else ""))

        def fits(rate: float, topo=topo):
            try:
                r = evaluate(problem, topo, rate=rate).to_dict()
            except InfeasibleError:
                return None
            return r if r["fleet"]["within_power_cap"] else None

        lo, hi = 0.0, 100.0
        while fits(hi) is not None:
            lo, hi = hi, hi * 2
        while hi - lo > 1e-3 * max(lo, 1.0):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if fits(mid) is not None else (lo, mid)
        if lo > best[0]:
            best = (lo, topo[0].spec(), fits(lo) or {})
    return best


def splitwise() -> list[dict]:
    rows = []
    for trace, name in (("conversation", "azure-conv-h100"), ("coding", "azure-code")):
        ref = {}
        for design, (sets, mode, caps) in SPLITWISE.items():
            common = ["model=llama-3.1-70b", "pools.max_pools=1", f"pools.disaggregation={mode}",
                      f"pools.phase_power_caps={caps}"] + sets
            try:
                thr, _ = _solve(name, common + ["objective=max_throughput", f"power.facility_cap_mw={CAP_MW}"])
                cost, _ = _solve(name, common + ["objective=min_cost"])
            except Exception as e:         # noqa: BLE001  (an infeasible design is a row)
                rows.append({"trace": trace, "design": design, "plan at the power cap": f"infeasible: {str(e)[:80]}",
                             "req/s": float("nan"), "vs Baseline-H100": float("nan"), "vs Baseline-A100": float("nan"),
                             "GPUs": float("nan"), "tok/J": float("nan"), "$/h at the trace's rate": float("nan"),
                             "min-cost plan": "-"})
                continue
            rate = thr["throughput"]["arrival_rate"]
            ref.setdefault(design, rate)
            rows.append({"trace": trace, "design": design, "plan at the power cap": thr["topology"], "req/s": rate,
                         "vs Baseline-H100": rate / ref["Baseline-H100"] if "Baseline-H100" in ref else float("nan"),
                         "vs Baseline-A100": rate / ref["Baseline-A100"] if "Baseline-A100" in ref else float("nan"),
                         "GPUs": thr["fleet"]["gpus"], "tok/J": thr["fleet"]["tokens_per_joule"],
                         "$/h at the trace's rate": cost["fleet"]["cost_per_hour"], "min-cost plan": cost["topology"]})
            if design == "Baseline-H100":
                sets_h = ["model=llama-3.1-70b", f"power.facility_cap_mw={CAP_MW}"]
                r_cap, topo_cap, res_cap = _capped_baseline_rate(name, sets_h)
                ref["Baseline-H100cap"] = r_cap
                rows.append({"trace": trace, "design": "Baseline-H100cap (aggregated, best of the same caps)",
                             "plan at the power cap": topo_cap, "req/s": r_cap,
                             "vs Baseline-H100": r_cap / ref["Baseline-H100"],
                             "vs Baseline-A100": (r_cap / ref["Baseline-A100"] if "Baseline-A100" in ref
                                                  else float("nan")),
                             "GPUs": res_cap.get("fleet", {}).get("gpus", float("nan")),
                             "tok/J": res_cap.get("fleet", {}).get("tokens_per_joule", float("nan")),
                             "$/h at the trace's rate": float("nan"), "min-cost plan": "-"})
    return rows


def distserve() -> list[dict]:
    rows = []
    for tpot in (150, 100, 60, 40, 30, 25):
        common = ["model=llama-3.1-70b", "gpus=[{id: a100, tp: [4, 8]}]", "objective=min_cost", "slo.ttft_p99_ms=2500",
                  f"slo.tpot_p99_ms={tpot}", "workload.arrival_rate=50"]
        a, _ = _solve("sharegpt-llama8b", common + ["pools.disaggregation=off"])
        p, _ = _solve("sharegpt-llama8b", common + ["pools.disaggregation=allow"])
        rows.append({"TPOT P99 ms": tpot, "aggregated GPUs": a["fleet"]["gpus"], "allow GPUs": p["fleet"]["gpus"],
                     "goodput per GPU, ratio": a["fleet"]["gpus"] / p["fleet"]["gpus"],
                     "aggregated tok/J": a["fleet"]["tokens_per_joule"], "allow tok/J": p["fleet"]["tokens_per_joule"],
                     "plan (allow)": p["topology"]})
    return rows


def simulated(plans: list[dict]) -> list[dict]:
    import fleetopt
    from fleetopt.problem import Problem
    from fleetopt.simulator.run import simulate
    from fleetopt.topology import parse_topology

    rows = []
    for r in plans:
        plan = r["_plan"]
        if "pd(" not in plan["topology"]:
            continue
        inst = fleetopt.load_instance(ROOT / "instances" / f"{r['instance']}.yaml", ["pools.disaggregation=allow"])
        problem = Problem.from_instance(inst)
        e_s = max(p["mean_service_ms"] for p in plan["pools"] if p["instances"])
        n = int(min(1_000_000, max(100_000, 20 * e_s / 1e3 * plan["fleet"]["arrival_rate"])))
        for batch in (None, 8192):
            s = simulate(problem, parse_topology(plan["topology"]), n, seed=1, prefill_batch_tokens=batch)
            for p in s["pools"]:
                if p["phase"] != "split":
                    continue
                rows.append({"instance": r["instance"], "range": f"({p['lo_tokens']:.0f}, {p['hi_tokens']:.0f}]",
                             "prefill batching": "off" if batch is None else f"{batch} tokens",
                             "requests": p["requests"],
                             "TTFT P99 sim": p["ttft_p99_ms"], "TTFT P99 sized": p["analytical_ttft_p99_ms"],
                             "dev %": 100 * (p["ttft_p99_ms"] / p["analytical_ttft_p99_ms"] - 1),
                             "prefill wait mean ms": p["prefill_wait_mean_ms"],
                             "TPOT P99 sim": p["tpot_p99_ms"], "TPOT SLO": inst.slo.tpot_p99_ms,
                             "prefill util": p["prefill_utilization"],
                             "fleet tok/J dev %": 100 * s["deviation"]["tokens_per_joule"],
                             "J: prefill / transfer / decode": f"{p['prefill_energy_j'] / 1e6:.2f} / "
                                                              f"{p['transfer_energy_j'] / 1e6:.3f} / "
                                                              f"{p['decode_energy_j'] / 1e6:.2f} MJ"})
    return rows


def _prefill_model_ratio() -> tuple[float, float]:
    """Range of prefill_ms / the step model's prefill, Llama-3.1-70B on H100 x 8, 1K-8K prompts."""
    import numpy as np

    from fleetopt.disagg.prefill import prefill_service_ms
    from fleetopt.profiles import make_profile

    prof = make_profile("physical", "llama-3.1-70b", "h100", 8)
    p = np.array([1000.0, 2000.0, 4000.0, 8000.0])
    r = np.asarray(prof.prefill_ms(p), float) / prefill_service_ms(prof, p)
    return float(r.min()), float(r.max())


def discussion(w: list[dict], sw: list[dict], ds: list[dict]) -> str:
    """Beside the published claims: where and why the figures differ (numbers from the tables)."""
    from fleetopt.physics.calibration import active_calibration

    def get(trace: str, design: str, key: str = "req/s") -> float:
        return next((r[key] for r in sw if r["trace"] == trace and r["design"].startswith(design)), float("nan"))

    conv, code = "conversation", "coding"
    ratio = lambda d: [get(t, d) / get(t, "Baseline-H100") for t in (conv, code)]  # noqa: E731
    hh, hhcap, bcap = ratio("Splitwise-HH"), ratio("Splitwise-HHcap"), ratio("Baseline-H100cap")
    usd = "$/h at the trace's rate"
    ha_cost = [100 * (get(t, "Splitwise-HA", usd) / get(t, "Baseline-H100", usd) - 1) for t in (conv, code)]
    best = [(next((r["min-cost plan"] for r in sw if r["trace"] == t and r["design"].startswith("fleetopt allow")),
                  "-"), 100 * (get(t, "fleetopt allow", usd) / get(t, "Baseline-H100", usd) - 1))
            for t in (conv, code)]
    lo, hi = _prefill_model_ratio()
    cal = active_calibration()
    sens = ", ".join(f"{r['only, prefill_ms pricing: gain %']:+.1f} %" for r in w)
    return "\n".join([
        "## Beside the published claims", "",
        "**Splitwise** (Patel et al., ISCA 2024): Llama-2-70B and BLOOM-176B on DGX-A100 and DGX-H100 machines, "
        "the Azure 2023 coding and conversation traces (the traces our `azure-code` and `azure-conv-h100` "
        "histograms come from); up to 1.4x the throughput at 20 % lower cost, or 2.35x the throughput under the "
        f"same power and cost budgets, against clusters of aggregated machines. Here, at the same {CAP_MW} MW: "
        f"Splitwise-HH {hh[0]:.2f}x / {hh[1]:.2f}x Baseline-H100 (conversation / coding), Splitwise-HHcap "
        f"{hhcap[0]:.2f}x / {hhcap[1]:.2f}x, and aggregated H100s under the same caps {bcap[0]:.2f}x / "
        f"{bcap[1]:.2f}x: on conversation the caps carry the gain, on coding the split adds to them. The cheapest "
        "split at each trace's rate has Splitwise-HA's shape (H100 prompt machines, A100 token machines), at "
        f"{ha_cost[0]:+.0f} % / {ha_cost[1]:+.0f} % against Baseline-H100's cost; the cheapest plan of all is "
        f"`{best[0][0]}` ({best[0][1]:+.0f} %) / `{best[1][0]}` ({best[1][1]:+.0f} %). Why our gains are smaller: "
        "(1) our "
        "aggregated baseline already mixes chunked prefill into the decode steps (Sarathi-style, vLLM's default), "
        "so the interference a split removes is one larger step, not stalled decodes; (2) we size on absolute "
        "P99 TTFT and TPOT, not on slowdowns against an unloaded machine; (3) in this power model (energy per "
        "operation) a memory-bound token machine already draws far below TDP, so a cap or an older GPU saves "
        "less; (4) catalog cloud prices, not Splitwise's machine costs; (5) Llama-3.1-70B stands in for "
        "Llama-2-70B (the traces exceed Llama-2's 4,096-token context) and BLOOM-176B is not in the catalog.", "",
        "**DistServe** (Zhong et al., OSDI 2024): OPT-13B/66B/175B on A100s, chatbot (ShareGPT), code completion "
        "and summarisation workloads; up to 7.4x more requests per GPU, or 12.6x tighter SLOs, at 90 % SLO "
        "attainment against vLLM. Here (ShareGPT, Llama-3.1-70B on A100: the catalog has no OPT): the goodput per "
        f"GPU ratio rises from {ds[0]['goodput per GPU, ratio']:.2f} at TPOT {ds[0]['TPOT P99 ms']} ms to "
        f"{ds[-1]['goodput per GPU, ratio']:.2f} at {ds[-1]['TPOT P99 ms']} ms: the mechanism DistServe names "
        "(a tight TPOT forces small batches when prefill shares the steps), at a fraction of its size, because (1) "
        "the vLLM DistServe measured ran each prefill as its own iteration, stalling every running decode, while "
        "our aggregated pools chunk it into the steps; (2) P99, not P90, attainment; (3) TP only, no pipeline "
        "parallelism search per phase; (4) Llama-3.1-70B's grouped-query attention holds 7x less KV per token "
        "than OPT-66B's multi-head attention, so decode batches are larger and cheaper here.", "",
        "**Calibration caveat.** A split pool prices its prefill with the step model that prices an aggregated "
        "pool's prefill work inside its mixed steps (so the energy comparison is like for like); an aggregated "
        f"pool's TTFT reads the separately fitted `prefill_ms`, {lo:.2f}-{hi:.2f}x the step model's prefill in "
        f"this calibration (`eta_prefill` {cal.eta_prefill:.2f}, `eta_flops` {cal.eta_flops:.2f}). Priced with "
        f"`prefill_ms` instead, a forced split gains {sens} (chat, code, long documents), against "
        + ", ".join(f"{r['only: gain %']:+.1f} %" for r in w)
        + " with the step model. Where TTFT binds, split pools look that much faster than aggregated ones.", ""])


def main() -> None:
    t0 = time.perf_counter()
    w = workloads()
    sw = splitwise()
    ds = distserve()
    sim = simulated(w)
    text = ["# Disaggregated prefill/decode: gain or loss against the best aggregated plan", "",
            "Generated by `python benchmarks/disaggregation.py` (physical mode, the calibration of this commit; "
            "the figures move with the physics). Each row's two plans are proven optima of the same model over "
            "their search spaces (`formulations.fleet` for aggregated pools, `formulations.fleet_disagg` for the "
            "combined space).", "",
            "## 1. Shipped workloads (each instance's model, GPUs, SLOs and rate; objective max tokens/J)", "",
            _md([{k: v for k, v in r.items() if k not in ("_plan", "plan (allow)", "aggregated plan",
                                                           "plan with caps", "aggregated plan with caps")} for r in w]),
            "", *[f"* {r['workload']}: aggregated `{r['aggregated plan']}`; allow: {r['plan (allow)']}; with caps "
                  f"`{r['plan with caps']}` against aggregated `{r['aggregated plan with caps']}`" for r in w], "",
            f"## 2. Splitwise's setup (Llama-3.1-70B for Llama-2-70B, 8-GPU instances, Azure 2023 traces, one pool, "
            f"{CAP_MW} MW "
            "facility power, peak provisioning): throughput at the same power, cost at the trace's rate", "",
            _md(sw), "",
            "## 3. DistServe's mechanism (ShareGPT, Llama-3.1-70B on A100 TP 4/8, TTFT P99 2.5 s, 50 req/s, "
            "GPUs at one price)", "", _md(ds), "",
            "## 4. The split plans of table 1 in the simulator (seed 1)", "", _md(sim), "",
            discussion(w, sw, ds),
            f"Wall time of this benchmark: {time.perf_counter() - t0:.0f} s."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "disaggregation.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
