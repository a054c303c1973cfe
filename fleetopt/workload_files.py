"""Loading a workload: an instance's distribution spec and the files it names, read into a
``LengthDist`` (``fleetopt.workload``) and an arrival rate.

Files are named relative to the instance's folder.  CDF knots and histogram cells read from
a CSV are checked as inline ones are (``fleetopt.instance.knots_problem`` and
``cells_problem``), a bad row named by its line; a trace's lengths must be non-negative
integers and its times seconds or date-times on every row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fleetopt.errors import FleetoptError
from fleetopt.instance import (
    CdfWorkload,
    HistogramWorkload,
    LognormalWorkload,
    MixtureWorkload,
    TraceWorkload,
    Workload,
    cells_problem,
    knots_problem,
)
from fleetopt.workload import LengthDist, from_cdf, from_cells, from_lognormal, scale_output

Component = CdfWorkload | HistogramWorkload | TraceWorkload | LognormalWorkload
"""One length distribution (a mixture's components are these)."""


def resolve_path(base: Path, p: str) -> Path:
    """``p`` as written in an instance: absolute (``~`` expanded), or relative to ``base``,
    the instance file's folder."""
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def _existing(base: Path, p: str, field: str = "workload.distribution.path") -> Path:
    """The file ``p`` names, refused in one line when it does not exist."""
    path = resolve_path(base, p)
    if not path.is_file():
        raise FleetoptError(f"{field}: no such file '{path}'")
    return path


def _checked(problem: tuple[int | None, int | None, str] | None, lines: list[int], field: str, name: str) -> None:
    """Raise a ``knots_problem``/``cells_problem`` found in a CSV, naming its line."""
    if problem is not None:
        i, _, msg = problem
        where = f" line {lines[i]}" if i is not None else ""
        raise FleetoptError(f"{field}: '{name}'{where}: {msg}")


def _component(d: Component, base: Path, key: str, max_out: int | None,
               field: str = "workload.distribution") -> tuple[LengthDist, float | None]:
    """(LengthDist, trace rate or None) for one distribution spec (``field`` names it in
    errors; a CSV's bad row is named by its line)."""
    if isinstance(d, CdfWorkload):
        knots: Sequence[Sequence[float]]
        if d.knots is not None:
            knots = d.knots
        else:
            assert d.path is not None                  # one of knots or path (the record's check)
            path = _existing(base, d.path, f"{field}.path")
            lines, knots = read_numeric_csv(path, ["total_tokens_le", "cumulative_fraction"], f"{field}.path")
            _checked(knots_problem(knots), lines, f"{field}.path", path.name)
        return from_cdf(knots, d.input_share, routing_key=key), None
    if isinstance(d, HistogramWorkload):
        cells: Sequence[Sequence[float]]
        if d.cells is not None:
            cells = d.cells
        else:
            assert d.path is not None
            path = _existing(base, d.path, f"{field}.path")
            cols = ["input_bin_lo", "input_bin_hi", "output_bin_lo", "output_bin_hi", "fraction"]
            lines, cells = read_numeric_csv(path, cols, f"{field}.path",
                                            ("dataset", d.dataset) if d.dataset is not None else None)
            if d.dataset is not None and not cells:
                raise FleetoptError(f"{field}.dataset: no rows for '{d.dataset}' in {path.name}")
            _checked(cells_problem(cells), lines, f"{field}.path", path.name)
        return from_cells(cells, d.points_per_dim, key, max_out), None
    if isinstance(d, TraceWorkload):
        inp, out, t = read_trace(resolve_path(base, d.path), d.input_column, d.output_column, d.time_column,
                                 f"{field}.path")
        rate = trace_rate(t) if t is not None else None
        return LengthDist.build(inp, out, np.ones_like(inp), key, max_out), rate
    return from_lognormal(d.input_median, d.input_sigma, d.output_median, d.output_sigma, routing_key=key,
                          max_tokens=d.max_tokens, max_output_tokens=max_out), None


def data_files(wl: Workload) -> list[tuple[str | None, str]]:
    """The files the workload reads (its CDF, histogram or trace ``path``, a mixture's
    components' ones) as (mixture component name, or None for the distribution itself;
    the path as the instance names it)."""
    d = wl.distribution
    comps: list[tuple[str | None, Component]] = (
        [(name, c.workload) for name, c in d.components.items()] if isinstance(d, MixtureWorkload) else [(None, d)])
    return [(name, p) for name, c in comps if (p := getattr(c, "path", None))]


def load_workload(wl: Workload, base: Path) -> tuple[LengthDist, float]:
    """The workload's length distribution and arrival rate (req/s), its files read relative
    to ``base``: a mixture blends its components' distributions by weight (each scaled by
    its own ``output_scale``), then every output is scaled by ``workload.output_scale``;
    ``arrival_rate: trace`` takes the trace's own mean rate."""
    d = wl.distribution
    key, max_out = wl.routing_key, wl.max_output_tokens
    rate: float | None = None
    if isinstance(d, MixtureWorkload):
        parts = [(c.weight, scale_output(_component(c.workload, base, key, max_out,
                                                    f"workload.distribution.components.{name}.workload")[0],
                                         c.output_scale, key, max_out))
                 for name, c in d.components.items() if c.weight > 0]
        tot = sum(wt for wt, _ in parts)
        if tot <= 0:
            raise FleetoptError("workload.distribution.components: every weight is 0")
        dist = LengthDist.build(np.concatenate([p.inp for _, p in parts]), np.concatenate([p.out for _, p in parts]),
                                np.concatenate([p.w * wt / tot for wt, p in parts]), "total" if key == "total" else key,
                                max_out)
    else:
        dist, rate = _component(d, base, key, max_out)
    dist = scale_output(dist, wl.output_scale, key, max_out)
    if wl.arrival_rate == "trace":
        if rate is None:
            raise FleetoptError("workload.arrival_rate: 'trace' needs a trace workload with a time column")
        return dist, rate
    return dist, float(wl.arrival_rate)


def read_numeric_csv(path: Path, columns: list[str], field: str, where: tuple[str, str] | None = None
                     ) -> tuple[list[int], list[list[float]]]:
    """(line numbers, rows of floats) of ``columns`` from a CSV with a header line, keeping
    the rows whose column ``where[0]`` equals ``where[1]``; a missing column or a cell that
    is not a finite number is one line naming ``field``, the file and the line."""
    name = Path(path).name
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise FleetoptError(f"{field}: '{name}' is empty")
            header = [h.strip() for h in header]
            for c in columns + ([where[0]] if where else []):
                if c not in header:
                    raise FleetoptError(f"{field}: '{name}' has no column {c!r}")
            idx = [header.index(c) for c in columns]
            w, want = (header.index(where[0]), where[1]) if where else (None, None)
            lines, rows = [], []
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if w is not None and (row[w].strip() if w < len(row) else None) != want:
                    continue
                vals = []
                for c, i in zip(columns, idx):
                    cell = row[i].strip() if i < len(row) else ""
                    try:
                        v = float(cell)
                    except ValueError:
                        v = math.nan
                    if not math.isfinite(v):
                        raise FleetoptError(f"{field}: '{name}' line {line}: {c} must be a finite number, got {cell!r}")
                    vals.append(v)
                lines.append(line)
                rows.append(vals)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FleetoptError(f"{field}: cannot read '{name}' as CSV ({getattr(exc, 'strerror', None) or exc})") from None
    return lines, rows


def read_trace(path: str | Path, input_col: str = "ContextTokens", output_col: str = "GeneratedTokens",
               time_col: str | None = "TIMESTAMP", field: str = "workload.distribution.path"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(input, output, arrival seconds or None) from a request trace CSV.  Lengths must be
    non-negative integers and times seconds or date-times on every row: the first bad row
    is named by its line number."""
    import pandas as pd  # heavy: only for traces

    p = Path(path)
    if not p.exists():
        raise FleetoptError(f"{field}: no such file '{p}'")
    cols = [input_col, output_col] + ([time_col] if time_col else [])
    try:
        df = pd.read_csv(p, usecols=lambda c: c in cols, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise FleetoptError(f"{field}: cannot read '{p}' as CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise FleetoptError(f"workload.distribution.columns: '{p.name}' has no column {missing[0]!r}")
    df = df[~(df == "").all(axis=1)]                    # blank lines
    if df.empty:
        raise FleetoptError(f"{field}: '{p.name}' has no requests")
    lengths = []
    for c in (input_col, output_col):
        v = pd.to_numeric(df[c].str.strip(), errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0) | (v != np.floor(v))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FleetoptError(f"{field}: '{p.name}' line {int(df.index[i]) + 2}: {c} must be a non-negative "
                                f"integer, got {df[c].iloc[i]!r}")
        lengths.append(v)
    t = None
    if time_col:
        col = df[time_col].str.strip()
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().any():                           # numbers are seconds
            bad = ~np.isfinite(num.to_numpy(float))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise FleetoptError(f"workload.distribution.time_column: '{p.name}' line {int(df.index[i]) + 2}: "
                                    f"{time_col} must be seconds, got {col.iloc[i]!r}")
            t = (num - num.min()).to_numpy(float)
        else:                                           # date-times (the Azure traces)
            ts = pd.to_datetime(col, errors="coerce")
            if ts.isna().all():
                raise FleetoptError(f"workload.distribution.time_column: '{time_col}' in '{p.name}' holds neither "
                                    f"seconds nor date-times")
            if ts.isna().any():
                i = int(np.flatnonzero(ts.isna().to_numpy())[0])
                raise FleetoptError(f"workload.distribution.time_column: '{p.name}' line {int(df.index[i]) + 2}: "
                                    f"{time_col} must be a date-time, got {col.iloc[i]!r}")
            t = (ts - ts.min()).dt.total_seconds().to_numpy()
    return lengths[0], lengths[1], t


def trace_rate(t: np.ndarray) -> float:
    """Mean arrival rate of a trace, requests/s: (n - 1) / span."""
    span = float(np.nanmax(t) - np.nanmin(t))
    return (len(t) - 1) / span if span > 0 else math.inf
