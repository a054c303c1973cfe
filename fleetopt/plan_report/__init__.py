"""The plan report: what ``solve --out``, ``evaluate --out`` and ``refine --out`` write.

From a result dict (what ``solve``/``evaluate`` return, or ``plan_from_refine`` of what
``refine`` returns) and its ``inputs`` block (``fleetopt.plan_report.inputs.plan_inputs``),
``write_report`` writes into one folder, as one set (``fleetopt.atomic.write_set``: a kill
leaves the whole old set or the whole new one; files get 0666 minus the umask):

* ``plan.json``: the result with its ``inputs`` (SLOs, power cap and basis, workload and
  routed length histogram, calibration, fleetopt version, instance file and overrides, the
  whole instance) and, for a solve, the solver statistics;
* ``pools.csv``: one row per pool;
* ``plan.md``: Markdown tables (inputs, pools, fleet, baselines, verification, solver) and
  the plots as image links;
* ``plan.html``: the same, self-contained (inline CSS, plots as base64 PNG), read offline;
* the plots as PNG (``figures.FIGURES``): fleet composition, pool boundaries over the
  routed length distribution, power against the cap, the plan against its baselines, and
  when they apply verification (analytical against simulated P99s), the Pareto front and
  the optimisation history of a refinement.

``fleetopt.plan_report.write`` renders and writes (its module is loaded when a report is
written: the start-up of a command without ``--out`` does not pay for it); nothing here
imports matplotlib until a report is rendered.
"""

from __future__ import annotations

from typing import Any

from fleetopt.plan_report.figures import FIGURES

TEXT_FILES = ["plan.json", "pools.csv", "plan.md", "plan.html"]
OUT_FILES = TEXT_FILES + [name for name, _, _ in FIGURES]
"""Every file a report may hold: an earlier report's files are replaced (with --force),
any other file in the folder is refused."""


def plan_from_refine(res: dict[str, Any]) -> dict[str, Any]:
    """A refine result as a plan result: the refined plan, the MILP plan as its baseline,
    and the refinement (study, trials, knobs, history, Pareto front) under ``refine``."""
    best = res["best"]
    milp = dict(res["milp"])
    out = {"instance": res.get("instance"), "objective": res.get("objective"), "topology": best["topology"],
           "pools": best["pools"], "fleet": best["fleet"], "baselines": {"milp": milp},
           "refine": {k: res.get(k) for k in ("study", "improvement", "trials", "seed", "seconds", "metric_names",
                                              "history", "pareto")} | {"knobs": best.get("knobs"),
                                                                        "trial": best.get("trial")}}
    if "verification" in res:
        out["verification"] = res["verification"]
    return out


def with_inputs(result: dict[str, Any], inputs: dict[str, Any] | None) -> dict[str, Any]:
    """The result with its ``inputs`` block (``inputs`` completing one the result has)."""
    merged = {**(result.get("inputs") or {}), **(inputs or {})}
    return {**result, "inputs": merged} if merged else dict(result)
