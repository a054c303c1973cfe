"""Rendering the plan report and writing it as one set (``fleetopt.plan_report``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetopt import atomic
from fleetopt.atomic import check_set_target, write_set
from fleetopt.plan_report import OUT_FILES, html, markdown, with_inputs
from fleetopt.plan_report.document import build
from fleetopt.plan_report.figures import FIGURES, render_png
from fleetopt.render import to_csv, to_json


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
