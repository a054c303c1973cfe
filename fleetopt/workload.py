"""Workloads: a joint (input, output) length distribution as weighted support points, an
arrival rate, and the routing key pools are split on.

Every source becomes the same object, ``LengthDist`` (points sorted by routing key, weights
summing to 1), built by deterministic quadrature (no sampling, so no seed is needed; the
one exception is paper mode's optional reproduction of the published simulator's seeded
Monte-Carlo draws, ``fleetopt.fleet.paper_mc_lengths``):

* ``cdf``        the paper's total-token CDF knots, piecewise uniform between knots, split
                 into input/output by a fixed input share (0.8 in the paper);
* ``histogram``  joint cells ``[in_lo, in_hi, out_lo, out_hi, fraction]`` (inline or CSV);
* ``trace``      a CSV of requests (Azure columns by default, any columns mapped);
* ``lognormal``  independent lognormal input and output lengths;
* ``mixture``    named components blended with weights.

Routing keys: ``total`` (input + output: the paper's choice; an oracle, since no router
knows the output length in advance), ``input`` (what a router sees), or
``input_plus_max_output`` (input + the request's max-output budget, a safe upper bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleetopt import FleetoptError

ROUTING_KEYS = ("total", "input", "input_plus_max_output")


def routing_keys(inp: np.ndarray, out: np.ndarray, routing_key: str, max_output_tokens: int | None = None):
    """(key, output) per request under the routing key; with ``input_plus_max_output`` the
    output is capped at the budget the key assumes."""
    if routing_key == "total":
        return inp + out, out
    if routing_key == "input":
        return inp.copy(), out
    if routing_key == "input_plus_max_output":
        if not max_output_tokens:
            raise FleetoptError("workload.max_output_tokens: required with routing_key input_plus_max_output")
        return inp + max_output_tokens, np.minimum(out, max_output_tokens)
    raise FleetoptError(f"workload.routing_key: must be one of {', '.join(ROUTING_KEYS)}, got '{routing_key}'")


@dataclass(frozen=True)
class LengthDist:
    """Weighted (input, output) support points, sorted by routing key."""

    inp: np.ndarray
    out: np.ndarray
    w: np.ndarray
    key: np.ndarray

    @classmethod
    def build(cls, inp, out, w, routing_key: str = "total", max_output_tokens: int | None = None) -> "LengthDist":
        inp = np.maximum(np.asarray(inp, float), 1.0)
        out = np.maximum(np.asarray(out, float), 1.0)
        w = np.asarray(w, float)
        if w.sum() <= 0:
            raise FleetoptError("workload: the distribution has no mass")
        key, out = routing_keys(inp, out, routing_key, max_output_tokens)
        order = np.lexsort((out, inp, key))
        keep = w[order] > 0
        o = order[keep]
        return cls(inp[o], out[o], w[o] / w[o].sum(), key[o])

    @property
    def mean_input(self) -> float:
        return float(self.w @ self.inp)

    @property
    def mean_output(self) -> float:
        return float(self.w @ self.out)

    @property
    def max_key(self) -> float:
        return float(self.key[-1])

    def quantile_key(self, q: float) -> float:
        c = np.cumsum(self.w)
        return float(self.key[min(np.searchsorted(c, q), len(c) - 1)])

    def slice(self, lo: float, hi: float) -> slice:
        """Index range of points with lo < key <= hi (keys are sorted)."""
        return slice(int(np.searchsorted(self.key, lo, "right")), int(np.searchsorted(self.key, hi, "right")))


def scale_output(dist: LengthDist, factor: float, routing_key: str = "total",
                 max_output_tokens: int | None = None) -> LengthDist:
    """Test-time scaling: every request's output x ``factor``, input and weights unchanged,
    O' = factor x O (at least 1 token; capped again at ``max_output_tokens`` under the
    ``input_plus_max_output`` key); routing keys recomputed."""
    if not factor > 0:
        raise FleetoptError(f"workload.output_scale: must be > 0, got {factor}")
    if factor == 1.0:
        return dist
    return LengthDist.build(dist.inp, dist.out * factor, dist.w, routing_key, max_output_tokens)


def _grid(lo: float, hi: float, m: int) -> np.ndarray:
    """m midpoints of equal sub-intervals of [lo, hi)."""
    return lo + (np.arange(m) + 0.5) * (hi - lo) / m


def from_cdf(knots: list[tuple[float, float]], input_share: float = 0.8, per_bin: int = 64,
             routing_key: str = "total") -> LengthDist:
    """Total tokens piecewise uniform between CDF knots (starting from 0), split by a fixed
    input share: the paper's workload construction (note section 3)."""
    xs = [0.0] + [float(k) for k, _ in knots]
    cs = [0.0] + [float(c) for _, c in knots]
    if any(b < a for a, b in zip(cs, cs[1:])) or any(b <= a for a, b in zip(xs, xs[1:])):
        raise FleetoptError("workload.cdf: knots must have increasing tokens and non-decreasing fractions")
    tot, w = [], []
    for (x0, x1), (c0, c1) in zip(zip(xs, xs[1:]), zip(cs, cs[1:])):
        if c1 > c0:
            g = _grid(x0, x1, per_bin)
            tot.append(g)
            w.append(np.full(per_bin, (c1 - c0) / per_bin))
    total = np.concatenate(tot)
    inp = input_share * total
    return LengthDist.build(inp, total - inp, np.concatenate(w), routing_key)


def from_cells(cells, per_dim: int = 4, routing_key: str = "total", max_output_tokens=None) -> LengthDist:
    """Joint histogram cells [in_lo, in_hi, out_lo, out_hi, fraction] -> per_dim^2 points
    per cell on a midpoint grid."""
    inp, out, w = [], [], []
    for c in cells:
        ilo, ihi, olo, ohi, f = (float(x) for x in c)
        gi, go = _grid(ilo, ihi, per_dim), _grid(olo, ohi, per_dim)
        I, O = np.meshgrid(gi, go, indexing="ij")
        inp.append(I.ravel()); out.append(O.ravel()); w.append(np.full(I.size, f / I.size))
    return LengthDist.build(np.concatenate(inp), np.concatenate(out), np.concatenate(w), routing_key, max_output_tokens)


def from_lognormal(input_median: float, input_sigma: float, output_median: float, output_sigma: float,
                   points: int = 48, routing_key: str = "total", max_tokens: float | None = None,
                   max_output_tokens=None) -> LengthDist:
    """Independent lognormal input and output lengths on a quantile grid (points^2 points)."""
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf((i + 0.5) / points) for i in range(points)])
    gi, go = input_median * np.exp(input_sigma * z), output_median * np.exp(output_sigma * z)
    if max_tokens:
        gi = np.minimum(gi, max_tokens)
    I, O = np.meshgrid(gi, go, indexing="ij")
    return LengthDist.build(I.ravel(), O.ravel(), np.full(I.size, 1.0 / I.size), routing_key, max_output_tokens)


def read_numeric_csv(path: Path, columns: list[str], field: str, where: tuple[str, str] | None = None
                     ) -> tuple[list[int], list[list[float]]]:
    """(line numbers, rows of floats) of ``columns`` from a CSV with a header line, keeping
    the rows whose column ``where[0]`` equals ``where[1]``; a missing column or a cell that
    is not a finite number is one line naming ``field``, the file and the line."""
    import csv

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
            w = header.index(where[0]) if where else None
            lines, rows = [], []
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if w is not None and (row[w].strip() if w < len(row) else None) != where[1]:
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
    import pandas as pd

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


def histogram_cells(inp: np.ndarray, out: np.ndarray, in_edges, out_edges) -> list[list[float]]:
    """Joint histogram of a trace as [in_lo, in_hi, out_lo, out_hi, fraction] cells (non-empty
    only): the compact form instances carry instead of raw traces."""
    h, _, _ = np.histogram2d(inp, out, bins=[in_edges, out_edges])
    h = h / h.sum()
    return [[float(in_edges[i]), float(in_edges[i + 1]), float(out_edges[j]), float(out_edges[j + 1]), round(float(h[i, j]), 6)]
            for i in range(len(in_edges) - 1) for j in range(len(out_edges) - 1) if h[i, j] > 0]
