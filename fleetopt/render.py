"""Rendering rows for the terminal (aligned table), JSON and CSV, and powers as text."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from typing import Any


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.6g}") if abs(v) < 1e15 else v
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item"):       # numpy scalars
        return _clean(v.item())
    return v


def to_json(obj: Any) -> str:
    """``obj`` as indented JSON (numpy numbers as Python ones, NaN and inf as null)."""
    return json.dumps(_clean(obj), indent=2)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return str(v)


def table(rows: list[dict], title: str | None = None) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    num = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in cols]
    line = lambda vals: "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(vals, widths, num))  # noqa: E731
    out = ([title] if title else []) + [line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(s.rstrip() for s in out)


def power_unit(w: float) -> tuple[float, str]:
    """The unit a power of ``w`` watts reads best in: W below 1 kW, kW below 1 MW, else MW;
    returns (watts per unit, unit name)."""
    a = abs(w)
    return (1.0, "W") if a < 1e3 else (1e3, "kW") if a < 1e6 else (1e6, "MW")


def power_text(w: float, sig: int = 4, decimals: int | None = None, unit: tuple[float, str] | None = None) -> str:
    """A power in watts as text in its unit (``power_unit``, or ``unit``), with ``sig``
    significant digits (``decimals`` fixes the digits after the point instead), never in
    exponent form: 850 W, 12.35 kW, 1.234 MW."""
    scale, name = unit or power_unit(w)
    v = w / scale
    if decimals is None:
        decimals = max(0, sig - 1 - math.floor(math.log10(abs(v)))) if v else 0
    return f"{v:.{decimals}f} {name}"


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as CSV, the first row's keys the header."""
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(_clean(r))
    return buf.getvalue()


def render(rows: list[dict[str, Any]], fmt: str, title: str | None = None) -> str:
    """Rows as ``table`` (aligned text under ``title``), ``json`` or ``csv``."""
    if fmt == "json":
        return to_json(rows)
    if fmt == "csv":
        return to_csv(rows).rstrip("\n")
    return table(rows, title)

