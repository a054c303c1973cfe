"""The plan report's content, independent of its format: a list of blocks (headings,
paragraphs, tables, figures) built from the result dict and its ``inputs`` block, which
``markdown.py`` and ``html.py`` render the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fleetopt.plan_report.figures import BASELINE_NAMES, power_unit_kw, ranges


@dataclass
class Heading:
    """A section heading (level 1 or 2)."""

    text: str
    level: int = 2


@dataclass
class Para:
    """A paragraph of plain text."""

    text: str


@dataclass
class Table:
    """A table: header cells, rows of cells (text), and which columns are numeric (right-aligned)."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)


@dataclass
class Figure:
    """A plot, by the file name of its PNG, with its caption."""

    name: str
    caption: str


Block = Heading | Para | Table | Figure


def num(v: Any, sig: int = 4) -> str:
    """A number as text: integers as they are (thousands separated), floats to ``sig``
    significant digits without exponent for ordinary magnitudes; None or non-finite as -."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        a = abs(v)
        if 1e-4 <= a < 1e15:
            d = max(0, sig - 1 - math.floor(math.log10(a)))
            t = f"{v:,.{d}f}"
            return t.rstrip("0").rstrip(".") if "." in t else t
        return f"{v:.{sig - 1}e}"
    return str(v)


def pct(v: Any, sig: int = 3) -> str:
    """A fraction as a percentage (``0.0123`` -> ``1.23 %``)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{num(100 * float(v), sig)} %"


def _table(header: list[str], rows: list[list[Any]], numeric: list[bool] | None = None) -> Table:
    if numeric is None:
        numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
                   and any(r[i] is not None for r in rows) for i in range(len(header))]
    return Table(header, [[num(c) if not isinstance(c, str) else c for c in r] for r in rows], numeric)


def inputs_table(inputs: dict) -> Table:
    """The inputs that matter: workload, SLOs, the power cap and its basis, calibration, version."""
    slo = inputs.get("slo") or {}
    pw = inputs.get("power") or {}
    wl = inputs.get("workload") or {}
    rl = wl.get("routed_lengths") or {}
    cal = inputs.get("calibration") or {}
    cap = pw.get("facility_cap_mw")
    rows: list[list[Any]] = [
        ["model", inputs.get("model")], ["mode", inputs.get("mode")], ["objective", inputs.get("objective")],
        ["arrival rate (req/s)", wl.get("arrival_rate")],
        ["workload distribution", wl.get("distribution")],
        ["routing key", wl.get("routing_key")],
        ["mean input / output tokens", f"{num(rl.get('mean_input_tokens'))} / {num(rl.get('mean_output_tokens'))}"
         if rl else "-"],
        ["P99 TTFT SLO (ms)", slo.get("ttft_p99_ms")],
        ["P99 TPOT SLO (ms)", slo.get("tpot_p99_ms") if slo.get("tpot_p99_ms") is not None else "none"],
        ["utilisation cap", slo.get("max_utilization")],
        ["facility power cap (MW)", cap if cap is not None else "none"],
        ["cap basis (provisioning)", pw.get("provisioning_basis")],
        ["PUE", pw.get("pue")],
        ["host power per 8-GPU node (W)", pw.get("host_w_per_node")],
        ["calibration", f"{cal.get('label', '-')} ({cal.get('source', '-')})"],
        ["fleetopt version", inputs.get("fleetopt_version")],
    ]
    if inputs.get("instance_file"):
        rows.append(["instance file", f"`{inputs['instance_file']}`"])
    if inputs.get("overrides"):
        rows.append(["overrides (--set)", ", ".join(f"`{o}`" for o in inputs["overrides"])])
    gpus = inputs.get("gpus") or []
    if gpus:
        rows.append(["candidate GPUs", ", ".join(f"{g['id']} (TP {'/'.join(str(t) for t in g.get('tp', []))}"
                                                  + (f", at most {g['max_gpus']}" if g.get("max_gpus") else "") + ")"
                                                  for g in gpus)])
    return _table(["input", "value"], rows, [False, False])


def pools_table(result: dict) -> Table:
    """One row per pool (a mixed range's members and a split range's phases each a row)."""
    pools = result["pools"]
    phase = any("phase" in p for p in pools)
    mixed = any(p.get("split", 1.0) != 1.0 for p in pools)
    header = ["pool", "range (tokens)"] + (["phase"] if phase else []) + ["GPU", "TP", "admission"] + \
        (["share"] if mixed else []) + ["instances", "GPUs", "req/s", "utilisation", "batch", "P99 TTFT (ms)",
                                        "P99 TPOT (ms)", "IT power (kW)", "tok/s", "tok/J", "$/h", "binding"]
    rows = []
    for k, r in enumerate(ranges(pools)):
        for p in r["rows"]:
            rows.append([str(k + 1), f"{p['lo_tokens']:.0f}-{p['hi_tokens']:.0f}"]
                        + ([str(p.get("phase", "both"))] if phase else [])
                        + [str(p["gpu"]), p["tp"], str(p.get("admission") or "-")]
                        + ([p.get("split", 1.0)] if mixed else [])
                        + [p.get("instances"), p.get("gpus"), p.get("arrival_rate"), pct(p.get("utilization")),
                           p.get("batch"), p.get("ttft_p99_ms"), p.get("tpot_p99_ms"), p.get("it_power_kw"),
                           p.get("tokens_per_s"), p.get("tokens_per_joule"), p.get("cost_per_hour"),
                           str(p.get("binding") or "-")])
    num_cols = [False, False] + ([False] if phase else []) + [False, True, False] + ([True] if mixed else []) + \
        [True] * 11 + [False]
    return _table(header, rows, num_cols)


def fleet_table(result: dict, inputs: dict | None) -> Table:
    """The fleet's totals, power against the cap with the headroom."""
    f = result["fleet"]
    pw = (inputs or {}).get("power") or {}
    cap = pw.get("facility_cap_mw")
    rows: list[list[Any]] = [
        ["instances", f.get("instances")], ["GPUs", f.get("gpus")],
        ["IT power, expected (kW)", f.get("it_power_kw")],
        ["IT power, peak (kW)", f.get("peak_it_power_kw")],
        ["facility power, IT x PUE (kW)", f.get("facility_power_kw")],
        [f"provisioned facility power, {pw.get('provisioning_basis', 'peak')} basis (kW)",
         f.get("provisioned_facility_kw")],
    ]
    if cap is not None:
        rows.append(["facility power cap (kW)", cap * 1e3])
        prov = f.get("provisioned_facility_kw")
        if prov is not None:
            room = cap * 1e3 - prov
            rows.append(["headroom under the cap (kW)", f"{num(room)} ({pct(room / (cap * 1e3))})"])
    rows += [["output tokens/s", f.get("tokens_per_s")], ["tokens per joule (IT)", f.get("tokens_per_joule")],
             ["tokens per joule (facility)", f.get("tokens_per_joule_facility")],
             ["tokens per watt, paper convention", f.get("tok_per_w_paper")],
             ["energy per query, facility (Wh)", f.get("energy_per_query_wh")],
             ["cost ($/h)", f.get("cost_per_hour")], ["cost ($ per million tokens)", f.get("cost_per_million_tokens")]]
    rows = [r for r in rows if r[1] is not None]
    return _table(["figure", "value"], rows, [False, True])


def baselines_table(result: dict) -> Table | None:
    """The plan and every baseline under the same model, with the plan's gains."""
    base = {k: b for k, b in (result.get("baselines") or {}).items() if b}
    if not base:
        return None
    fkw = max(float(b.get("facility_power_kw") or 0.0) for b in [result["fleet"], *base.values()])
    scale, unit = power_unit_kw(fkw)
    header = ["fleet", "topology", "instances", "GPUs", "IT power (kW)", f"facility power ({unit})", "tok/J",
              "$/h", "plan's tok/J gain", "GPUs saved"]
    f = result["fleet"]
    rows: list[list[Any]] = [["**plan**", f"`{result.get('topology', '')}`", f.get("instances"), f.get("gpus"),
                              f.get("it_power_kw"), (f.get("facility_power_kw") or 0.0) / scale,
                              f.get("tokens_per_joule"), f.get("cost_per_hour"), "-", "-"]]
    for k, b in base.items():
        gain = (f["tokens_per_joule"] / b["tokens_per_joule"] - 1.0) if b.get("tokens_per_joule") else None
        rows.append([BASELINE_NAMES.get(k, k), f"`{b.get('topology', '')}`", b.get("instances"), b.get("gpus"),
                     b.get("it_power_kw"), (b.get("facility_power_kw") or 0.0) / scale, b.get("tokens_per_joule"),
                     b.get("cost_per_hour"), pct(gain) if gain is not None else "-",
                     (b.get("gpus") or 0) - (f.get("gpus") or 0)])
    return _table(header, rows, [False, False] + [True] * 8)


def solver_table(result: dict) -> Table | None:
    """Solver statistics: status, gap, sizes, times, search space."""
    s = result.get("solver")
    if not s:
        return None
    ss = result.get("search_space") or {}
    rows: list[list[Any]] = [
        ["solver", s.get("name")], ["status", s.get("status")],
        ["relative gap", pct(s["gap"]) if s.get("gap") is not None else "-"],
        ["objective", s.get("objective")], ["bound", s.get("bound")],
        ["whole solve (s)", s.get("seconds")], ["sizing columns (s)", s.get("column_seconds")],
        ["MILP stages (s)", s.get("solve_seconds")],
        ["variables x rows (optimum stage)", f"{num(s.get('variables'))} x {num(s.get('constraints'))}"],
        ["Dinkelbach iterations", s.get("dinkelbach_iterations")],
    ]
    if ss:
        rows += [["candidate boundaries", len(ss.get("boundaries") or [])],
                 ["GPU/TP/admission configs", len(ss.get("configs") or [])],
                 ["pools at most (K)", ss.get("max_pools")], ["columns", ss.get("columns")],
                 ["columns after dominance pruning", ss.get("columns_after_pruning")],
                 ["infeasible columns", ss.get("infeasible_columns")]]
    for n in s.get("notes") or []:
        rows.append(["note", str(n)])
    return _table(["statistic", "value"], [[a, b if b is not None else "-"] for a, b in rows], [False, True])


def verification_table(result: dict) -> Table | None:
    """Analytical against simulated P99s per pool."""
    v = result.get("verification")
    if not v or not v.get("pools"):
        return None
    rows = []
    for p in v["pools"]:
        rows.append([f"{p['lo_tokens']:.0f}-{p['hi_tokens']:.0f}", str(p["gpu"]), p.get("tp"), p.get("instances"),
                     p.get("requests"), p.get("analytical_ttft_p99_ms"), p.get("ttft_p99_ms"),
                     p.get("analytical_tpot_p99_ms"), p.get("tpot_p99_ms"), p.get("slo_attainment")])
    return _table(["range (tokens)", "GPU", "TP", "instances", "requests simulated", "P99 TTFT analytical (ms)",
                   "P99 TTFT simulated (ms)", "P99 TPOT analytical (ms)", "P99 TPOT simulated (ms)",
                   "SLO attainment"], rows, [False, False] + [True] * 8)


def refine_blocks(result: dict) -> list[Block]:
    """Refinement: the MILP plan against the refined one, the trials, the knobs, the front."""
    ref = result.get("refine")
    if not ref:
        return []
    t = ref.get("trials") or {}
    out: list[Block] = [Heading("Refinement"), Para(
        f"Study `{ref.get('study')}`: improvement over the MILP plan {pct(ref.get('improvement'))}; "
        f"{num(t.get('count'))} trials ({num(t.get('completed'))} completed, {num(t.get('pruned'))} pruned, "
        f"{num(t.get('this_run'))} this run); objectives {', '.join(ref.get('metric_names') or [])}.")]
    knobs = ref.get("knobs") or {}
    if knobs:
        out.append(_table(["knob", "value"], [[k, v] for k, v in knobs.items()],
                          [False, True]))
    front = ref.get("pareto")
    if front:
        keys = [k for k in front[0] if k != "topology"]
        out.append(_table(keys + ["topology"], [[r.get(k) for k in keys] + [f"`{r.get('topology')}`"] for r in front]))
    pruned: dict[str, int] = {}
    for h in ref.get("history") or []:
        if h.get("state") == "PRUNED":
            why = h.get("pruned_because") or "pruned"
            pruned[why] = pruned.get(why, 0) + 1
    if pruned:
        out.append(_table(["pruned because", "trials"], sorted(([k, v] for k, v in pruned.items()),
                                                                 key=lambda r: -r[1]), [False, True]))
    return out


def build(result: dict, inputs: dict | None, figures: list[tuple[str, str]]) -> list[Block]:
    """The report's blocks; ``figures``: (file name, caption) of the plots written."""
    inputs = inputs or {}
    title = result.get("instance") or inputs.get("instance", {}).get("name") or "plan"
    kind = "refined plan" if result.get("refine") else "plan"
    f = result["fleet"]
    s = result.get("solver") or {}
    status = f" Solver status: {s['status']}." if s.get("status") else ""
    blocks: list[Block] = [
        Heading(f"fleetopt {kind}: {title}", 1),
        Para(f"Topology `{result.get('topology', '')}`: {num(len(ranges(result['pools'])))} pools, "
             f"{num(f.get('instances'))} instances, {num(f.get('gpus'))} GPUs, {num(f.get('it_power_kw'))} kW IT, "
             f"{num(f.get('tokens_per_joule'))} tokens per joule.{status}"),
        Heading("Inputs"), inputs_table(inputs),
        Heading("Pools"), pools_table(result),
        Heading("Fleet"), fleet_table(result, inputs),
    ]
    bt = baselines_table(result)
    if bt is not None:
        blocks += [Heading("Plan against baselines"), bt]
    if figures:
        blocks.append(Heading("Figures"))
        blocks += [Figure(n, c) for n, c in figures]
    vt = verification_table(result)
    if vt is not None:
        v = result["verification"]
        blocks += [Heading("Verification by simulation"),
                   Para("SLO MISSED in simulation." if v.get("slo_missed") else "The SLOs hold in simulation."), vt]
    blocks += refine_blocks(result)
    st = solver_table(result)
    if st is not None:
        blocks += [Heading("Solver statistics"), st]
    return blocks
