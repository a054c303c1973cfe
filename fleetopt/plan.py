"""Plans: what ``solve`` and ``evaluate`` return, and how a plan is read, written and checked.

A ``Plan`` holds the fleet's pools (``pools`` is a pandas DataFrame; ``pool_rows`` the same
as dicts), the fleet totals, and for a solved plan the baselines, the gains over them and
the solver's statistics (status, objective, bound, gap, B&B nodes, root bound), plus the
inputs that matter (SLOs, power cap and basis, calibration, fleetopt version).
``to_dict`` is the JSON the command line prints (``fleetopt solve --format json``);
``write`` puts the plan report in a folder as one set (``fleetopt.plan_report``: plan.json,
pools.csv, plan.md, plan.html and the plots).

``check_plan(problem, plan)`` recomputes every constraint of a plan from its pools: every
length served exactly once (mixed shares summing to 1), at most K ranges, stock per GPU
type, the facility cap on the instance's basis, both SLOs and the utilisation cap per pool,
and the fleet totals as sums of the pools.  Every solve runs it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from fleetopt import atomic, lazy
from fleetopt.errors import FleetoptError, PlanCheckError
from fleetopt.plan_report import OUT_FILES
from fleetopt.render import table, to_json
from fleetopt.sizing import PoolSizing
from fleetopt.topology import PoolChoice, groups, parse_topology, topology_spec

if TYPE_CHECKING:
    import pandas as pd

    from fleetopt.problem import Problem

WRITE_REPORT = "fleetopt.plan_report.write:write_report"
REPORT_MARKDOWN = "fleetopt.plan_report.write:report_markdown"
"""The plan report's renderers, loaded when a plan is written or shown as Markdown."""

REL_TOL = 1e-9
"""Relative tolerance of ``check_plan`` (the solver's own is 1e-9 on feasibility)."""


class Plan(msgspec.Struct, frozen=True, eq=False):
    """A fleet plan (module docstring).  ``kind`` is ``solve`` (an optimised plan, with
    baselines and solver statistics) or ``evaluate`` (a given topology, sized)."""

    kind: str
    instance: str
    mode: str
    model: str
    topology: tuple[PoolChoice, ...]
    sized: tuple[PoolSizing, ...]
    """The pools as sized (a split pool is two: prefill, decode)."""
    pool_rows: tuple[dict[str, Any], ...]
    """The pools as the JSON reports them, one dict per sized pool."""
    fleet: dict[str, Any]
    inputs: dict[str, Any]
    admission: str | None = None
    objective: str | None = None
    baselines: dict[str, Any] | None = None
    gains: dict[str, Any] | None = None
    disaggregation: dict[str, Any] | None = None
    solver: dict[str, Any] | None = None
    search_space: dict[str, Any] | None = None
    throughput: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    """Further sections a caller attaches (they follow the others in ``to_dict``)."""

    # ---- views ----------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """The topology as text (``4096:h100x8:paged,65536:b200x8:paged``)."""
        return topology_spec(self.topology)

    @property
    def pools(self) -> pd.DataFrame:
        """The pools as a DataFrame, one row per sized pool (pandas imported on first use)."""
        import pandas as pd

        return pd.DataFrame(list(self.pool_rows))

    def replace(self, **changes: Any) -> Plan:
        """A copy with some fields changed (plans are never changed in place)."""
        return msgspec.structs.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The plan as the command line's JSON: ``solve``'s or ``evaluate``'s result, with
        an ``inputs`` block last."""
        pools = [dict(r) for r in self.pool_rows]
        if self.kind == "evaluate":
            out: dict[str, Any] = {"instance": self.instance, "mode": self.mode, "model": self.model,
                                   "admission": self.admission, "pools": pools, "fleet": dict(self.fleet)}
        else:
            out = {"instance": self.instance, "mode": self.mode, "model": self.model, "objective": self.objective,
                   "topology": self.spec, "pools": pools, "fleet": dict(self.fleet), "baselines": self.baselines,
                   "gains": self.gains}
            if self.disaggregation is not None:
                out["disaggregation"] = self.disaggregation
            out["solver"] = self.solver
            out["search_space"] = self.search_space
        if self.throughput is not None:
            out["throughput"] = self.throughput
        if self.verification is not None:
            out["verification"] = self.verification
        out.update(self.extra)
        out["inputs"] = self.inputs
        return out

    def to_json(self) -> str:
        """``to_dict`` as JSON (numbers to 6 significant digits, non-finite as null)."""
        return to_json(self.to_dict())

    def to_text(self) -> str:
        """The plan as the terminal shows it: pools, fleet and, when solved, the plan
        against its baselines and the solver's line."""
        return solve_tables(self.to_dict()) if self.kind == "solve" else fleet_tables(self.to_dict())

    def to_markdown(self) -> str:
        """The plan as Markdown tables (``plan.md`` of its report, without the plots)."""
        text: str = lazy.load(REPORT_MARKDOWN)(self.to_dict())
        return text

    def summary_row(self) -> dict[str, Any]:
        """One flat row for a sweep's table: status, topology, ranges, boundaries, GPU types,
        fleet totals, the homogeneous baseline and the gain over it, gap and solver time."""
        f = self.fleet
        b = self.baselines or {}
        h, two = b.get("homogeneous"), b.get("two_pool_paper")
        s = self.solver or {}
        highs = sorted({r["hi_tokens"] for r in self.pool_rows})
        return {"status": s.get("status"), "error": None, "topology": self.spec,
                "pools": len(highs), "boundaries": ",".join(str(int(x)) for x in highs[:-1]),
                "gpu_types": ",".join(sorted({r["gpu"] for r in self.pool_rows})),
                "instances_total": f["instances"], "gpus": f["gpus"], "it_power_kw": f["it_power_kw"],
                "facility_power_kw": f["facility_power_kw"], "tokens_per_joule": f["tokens_per_joule"],
                "tok_per_w_paper": f["tok_per_w_paper"], "arrival_rate": f["arrival_rate"],
                "cost_per_hour": f["cost_per_hour"], "energy_per_query_wh": f["energy_per_query_wh"],
                "homog_topology": h["topology"] if h else None,
                "homog_tokens_per_joule": h["tokens_per_joule"] if h else None,
                "homog_gpus": h["gpus"] if h else None,
                "two_pool_tokens_per_joule": two["tokens_per_joule"] if two else None,
                "gain_vs_homog": (self.gains or {}).get("vs_homogeneous", {}).get("tokens_per_joule") if h else None,
                "demand_scale": (self.throughput or {}).get("demand_scale"),
                "gap": s.get("gap"), "solver_seconds": s.get("solve_seconds")}

    def verification_text(self) -> list[str]:
        """The lines ``--verify`` adds after the tables (none without a verification)."""
        v = self.verification
        if v is None:
            return []
        f = v["fleet"]
        flag = "SLO MISSED in simulation" if v["slo_missed"] else "SLOs hold in simulation"
        lines = [f"\nverify: {flag}: P99 TTFT {f['ttft_p99_ms']:.0f} ms, P99 TPOT {f['tpot_p99_ms']:.1f} ms, "
                 f"attainment {f['slo_attainment']:.4f}, tok/J {f['tokens_per_joule']:.4g} "
                 f"({100 * v['deviation'].get('tokens_per_joule', 0):+.1f} % vs analytical)"]
        if "repair" in v:
            r = v["repair"]
            lines.append(f"repair: instances {r['instances_before']} -> {r['instances_after']}")
        return lines

    # ---- files ----------------------------------------------------------------------------

    def write(self, folder: str | Path, force: bool = False) -> list[Path]:
        """The plan report (``fleetopt.plan_report``: plan.json with its inputs, pools.csv,
        plan.md, plan.html and the plots) as one set: a kill at any moment leaves the whole
        old report or the whole new one; a full or read-only disk is one line and leaves
        nothing behind.  An earlier report is replaced only with ``force``; a folder
        holding other files is refused.  Returns the files written."""
        result = self.to_dict()
        result.setdefault("topology", self.spec)        # an evaluated plan's JSON has none; its report does
        return [Path(p) for p in lazy.load(WRITE_REPORT)(result, folder, force=force)]


def check_out_folder(folder: str | Path) -> list[str]:
    """Refuse (one line) a folder a plan report cannot be written to; the report files it
    holds (those ``Plan.write`` replaces only with ``force``)."""
    return atomic.check_set_target(folder, OUT_FILES, "--out", force=True)


def read_topology(path: str | Path, flag: str = "--plan") -> tuple[list[PoolChoice], dict[str, Any]]:
    """The topology of a plan.json written by ``fleetopt solve --out`` and its JSON; one
    line naming ``flag`` when the file is missing or not such a plan."""
    try:
        with open(path) as f:
            data = json.load(f)
        topology = data["topology"]
    except FileNotFoundError:
        raise FleetoptError(f"{flag}: no such file '{path}'") from None
    except OSError as e:
        raise FleetoptError(f"{flag}: cannot read '{path}' ({e.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise FleetoptError(f"{flag}: '{path}' is not a plan.json written by fleetopt solve --out") from None
    if not isinstance(topology, str):
        raise FleetoptError(f"{flag}: '{path}' is not a plan.json written by fleetopt solve --out")
    return parse_topology(topology), data


# ---- tables --------------------------------------------------------------------------------

def fleet_tables(result: dict[str, Any]) -> str:
    """The pools and fleet tables of a plan's dict."""
    cols = ["lo_tokens", "hi_tokens", "gpu", "tp", "instances", "gpus", "arrival_rate", "utilization", "batch",
            "ttft_p99_ms", "tpot_p99_ms", "it_power_kw", "tokens_per_joule", "binding"]
    if any(p.get("split", 1.0) != 1.0 for p in result["pools"]):       # a mixed pool: show each member's share
        cols.insert(4, "split")
    if any("phase" in p for p in result["pools"]):                      # split pools: prefill / decode / both
        cols.insert(2, "phase")
    pools = [{c: p[c] for c in cols} for p in result["pools"]]
    f = result["fleet"]
    fleet = [{k: f[k] for k in ("instances", "gpus", "it_power_kw", "facility_power_kw", "tokens_per_joule",
                                "tok_per_w_paper", "energy_per_query_wh", "cost_per_hour", "cost_per_million_tokens")}]
    return table(pools, "pools") + "\n\n" + table(fleet, "fleet")


def solve_tables(res: dict[str, Any]) -> str:
    """``fleet_tables`` plus the plan against its baselines and the solver's line."""
    s = res["solver"]
    lines = [fleet_tables(res), ""]
    rows = []
    for name, b in res["baselines"].items():
        if b:
            rows.append({"fleet": name, "topology": b["topology"], "instances": b["instances"], "gpus": b["gpus"],
                         "it_power_kw": b["it_power_kw"], "tokens_per_joule": b["tokens_per_joule"],
                         "cost_per_hour": b["cost_per_hour"]})
    f = res["fleet"]
    rows.insert(0, {"fleet": "plan", "topology": res["topology"], "instances": f["instances"], "gpus": f["gpus"],
                    "it_power_kw": f["it_power_kw"], "tokens_per_joule": f["tokens_per_joule"],
                    "cost_per_hour": f["cost_per_hour"]})
    lines.append(table(rows, "plan against baselines (same model)"))
    gap = "-" if s["gap"] is None else f"{100 * s['gap']:.4g} %"
    ss = res["search_space"]
    size = (f"{s['variables']} variables x {s['constraints']} rows (of {ss['columns']} columns, "
            f"{ss['columns_after_pruning']} after dominance pruning, the rest eliminated by bound)"
            if s["variables"] else f"no MILP solved ({ss['columns']} columns)")
    lines.append(f"\nsolver: {s['status']} (gap {gap}), {size}, {s['seconds']:.2f} s; search space "
                 f"{len(ss['boundaries'])} boundaries x {len(ss['configs'])} configs, K <= {ss['max_pools']}")
    if s["status"] == "time_limit":
        lines.append("WARNING: time limit reached: the plan is the best found, not proven optimal (see gap)")
    lines += [f"note: {n}" for n in s.get("notes", [])]
    return "\n".join(lines)


# ---- check_plan ----------------------------------------------------------------------------

def _over(value: float, limit: float) -> bool:
    """value > limit beyond the relative tolerance."""
    return value > limit + REL_TOL * max(abs(limit), 1.0)


def plan_violations(problem: Problem, plan: Plan, last_upper: int | None = None) -> list[str]:
    """Every constraint of ``plan`` recomputed from its pools, as the list of violations
    (empty: the plan holds).  With n_k, G_k, P_k a pool's instances, GPUs and provisioned
    power:

        coverage  ranges (0, u_1], (u_1, u_2], ... ascending, each served once: the shares
                  of a range's pools sum to 1 (|sum - 1| <= 1e-6); the last upper is
                  ``last_upper`` (the solve's last candidate boundary) when given
        pools     number of ranges <= K (a split range counts once)
        stock     sum_{k: gpu_k = g} G_k <= S_g          every GPU type with an inventory
        power     sum_k P_k <= cap                       on the instance's basis (x PUE)
        SLOs      TTFT_99,k <= target, TPOT_99,k <= target, utilisation_k <= cap   every pool
        totals    fleet instances, GPUs, IT power and tokens/s = the sums over its pools"""
    bad: list[str] = []
    topo = list(plan.topology)
    if not topo:
        return ["the plan has no pools"]
    ranges = groups(topo)
    ups = [u for u, _ in ranges]
    if ups[0] <= 0 or any(b <= a for a, b in zip(ups, ups[1:])):
        bad.append(f"coverage: range uppers not positive and ascending: {ups}")
    if last_upper is not None and ups[-1] != last_upper:
        bad.append(f"coverage: the last range ends at {ups[-1]}, not at the last window {last_upper}")
    for up, idx in ranges:
        tot = sum(topo[k].share for k in idx)
        if abs(tot - 1.0) > 1e-6:
            bad.append(f"coverage: the shares of the range ending at {up} sum to {tot:.9g}, not 1")
    if len(ranges) > problem.pools.max_pools:
        bad.append(f"pools: {len(ranges)} ranges > K = {problem.pools.max_pools}")
    sized = list(plan.sized)
    lows = {round(p.lo_tokens) for p in sized}
    if 0 not in lows:
        bad.append("coverage: no pool starts at 0 tokens")
    for lo, hi in {(round(p.lo_tokens), round(p.hi_tokens)) for p in sized}:
        if lo != 0 and lo not in {round(q.hi_tokens) for q in sized}:
            bad.append(f"coverage: the pool ({lo}, {hi}] starts where no pool ends")
    gpus: dict[str, int] = {}
    for p in sized:
        gpus[p.gpu] = gpus.get(p.gpu, 0) + int(p.gpus)
    for g, limit in problem.stock().items():
        if gpus.get(g, 0) > limit:
            bad.append(f"stock: {gpus[g]} {g} GPUs > inventory {limit}")
    pw = problem.power
    prov = sum(pw.provisioned_w(p.instances, p.it_power_w, p.peak_instance_power_w, p.gpus,
                                problem.catalog.gpu(p.gpu).tdp_w) for p in sized)
    if pw.cap_w is not None and _over(prov, pw.cap_w):
        bad.append(f"power: provisioned {prov:.6g} W > cap {pw.cap_w:.6g} W ({pw.basis} basis, PUE {pw.pue:g})")
    slo = problem.slo
    for p in sized:
        name = f"pool ({p.lo_tokens:.0f}, {p.hi_tokens:.0f}] on {p.gpu}x{p.tp}"
        if p.instances < 0 or (p.arrival_rate > 0 and p.instances == 0):
            bad.append(f"{name}: {p.instances} instances for {p.arrival_rate:.6g} req/s")
        if p.arrival_rate <= 0:
            continue
        if _over(p.ttft_p99_ms, slo.ttft_p99_ms):
            bad.append(f"{name}: P99 TTFT {p.ttft_p99_ms:.6g} ms > {slo.ttft_p99_ms:g} ms")
        if slo.tpot_p99_ms is not None and _over(p.tpot_p99_ms, slo.tpot_p99_ms):
            bad.append(f"{name}: P99 TPOT {p.tpot_p99_ms:.6g} ms > {slo.tpot_p99_ms:g} ms")
        if _over(p.utilization, slo.max_utilization):
            bad.append(f"{name}: utilisation {p.utilization:.6g} > {slo.max_utilization:g}")
    f = plan.fleet
    for key, total in (("instances", sum(p.instances for p in sized)), ("gpus", sum(p.gpus for p in sized)),
                       ("it_power_kw", sum(p.it_power_w for p in sized) / 1e3),
                       ("tokens_per_s", sum(p.tokens_per_s for p in sized))):
        if not math.isclose(float(f[key]), float(total), rel_tol=1e-9, abs_tol=1e-9):
            bad.append(f"totals: fleet {key} {f[key]:.9g} != the pools' sum {total:.9g}")
    return bad


def check_plan(problem: Problem, plan: Plan, last_upper: int | None = None) -> None:
    """Raise ``PlanCheckError`` listing every violation ``plan_violations`` finds (a bug:
    a solved plan must satisfy its own constraints)."""
    bad = plan_violations(problem, plan, last_upper)
    if bad:
        raise PlanCheckError(f"plan {plan.spec} breaks its constraints: " + "; ".join(bad))

