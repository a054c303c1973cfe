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

Nothing here imports matplotlib until a report is rendered.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetopt import atomic
from fleetopt.atomic import check_set_target, write_set
from fleetopt.plan_report import html, markdown
from fleetopt.plan_report.document import build
from fleetopt.plan_report.figures import FIGURES, render_png
from fleetopt.render import to_csv, to_json

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


def report_markdown(result: dict[str, Any], inputs: dict[str, Any] | None = None) -> str:
    """The report's ``plan.md`` without the plots (no matplotlib)."""
    full = with_inputs(result, inputs)
    return markdown.render(build(full, full.get("inputs") or {}, []))


def render(result: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every file of the report, by name, as bytes (plots rendered once, used for the PNG
    files and embedded in the HTML)."""
    full = with_inputs(result, inputs)
    ins = full.get("inputs") or {}
    images: dict[str, bytes] = {}
    captions: list[tuple[str, str]] = []
    try:
        for name, caption, fn in FIGURES:
            fig = fn(full, ins)
            if fig is not None:
                images[name] = render_png(fig)
                captions.append((name, caption))
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    blocks = build(full, ins, captions)
    title = f"fleetopt plan: {full.get('instance') or 'plan'}"
    return {"plan.json": (to_json(full) + "\n").encode(), "pools.csv": to_csv(full["pools"]).encode(),
            "plan.md": markdown.render(blocks).encode(), "plan.html": html.render(blocks, images, title).encode(),
            **images}


def write_report(result: dict[str, Any], out_dir: str | os.PathLike[str], inputs: dict[str, Any] | None = None,
                 force: bool = False, what: str = "--out") -> list[str]:
    """Render the report and write it into ``out_dir`` as one set; returns the files
    written.  A folder holding files other than a report's is refused, and an earlier
    report is replaced only with ``force`` (one line, ``FleetoptError``)."""
    check_set_target(out_dir, OUT_FILES, what, force)       # before rendering: refuse early
    data = render(result, inputs)

    def writer(name: str) -> Callable[[Path], None]:
        """Writes file ``name`` (nothing for a file not in this report: an earlier one's is dropped)."""
        if name not in data:
            return lambda path: None
        return lambda path: atomic.write_atomic(path, data[name])

    write_set(out_dir, {name: writer(name) for name in OUT_FILES}, what, force)
    return [str(Path(out_dir) / n) for n in OUT_FILES if n in data]
