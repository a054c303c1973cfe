"""A sweep's rows: one declared Arrow schema for every case, one Parquet file per case.

Every row has the same columns (``row_schema``): the case's id and labels, one
``axis:<name>`` column per axis of the spec, typed over all its values, then ``status``,
``error`` and the metrics, so pandas, ``pyarrow.dataset``, duckdb and polars read
``OUT/cases`` as one table; a failed or infeasible case has nulls in its metrics, its
``status`` and its ``error``.  ``OUT/sweep.json`` records the schema: rows written by
another fleetopt or another form of the spec are brought to it on resume (``conform_rows``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetopt.atomic import temp_name

if TYPE_CHECKING:
    import pyarrow as pa

ROW_HEAD: tuple[tuple[str, str], ...] = (("case_id", "string"), ("instance", "string"), ("overrides", "string"))
ROW_BODY: tuple[tuple[str, str], ...] = (
    ("status", "string"), ("error", "string"), ("topology", "string"), ("pools", "int64"), ("boundaries", "string"),
    ("gpu_types", "string"), ("instances_total", "int64"), ("gpus", "int64"), ("it_power_kw", "float64"),
    ("facility_power_kw", "float64"), ("tokens_per_joule", "float64"), ("tok_per_w_paper", "float64"),
    ("arrival_rate", "float64"), ("cost_per_hour", "float64"), ("energy_per_query_wh", "float64"),
    ("homog_topology", "string"), ("homog_tokens_per_joule", "float64"), ("homog_gpus", "int64"),
    ("two_pool_tokens_per_joule", "float64"), ("gain_vs_homog", "float64"), ("demand_scale", "float64"),
    ("gap", "float64"), ("solver_seconds", "float64"), ("warnings", "string"), ("seconds", "float64"))
"""Every row's columns after the axes (``axis:<name>``, between ROW_HEAD and ROW_BODY)."""
METRICS: tuple[str, ...] = tuple(n for n, _ in ROW_BODY if n not in ("status", "error", "warnings", "seconds"))
"""The columns a solved case fills; a failed or infeasible one leaves them null."""
OPTIONAL_METRICS: tuple[str, ...] = ("homog_topology", "homog_tokens_per_joule", "homog_gpus",
                                     "two_pool_tokens_per_joule", "gain_vs_homog", "demand_scale")
"""Metrics null on a solved row too when they do not apply: a baseline that does not
exist (no feasible homogeneous fleet, no ``pools.paper_boundary``), the demand scale of an
objective other than max_throughput."""


def axis_types(cases: list[dict[str, Any]]) -> dict[str, str]:
    """Each axis's column type over every case of the spec: ``float64`` when all its
    values are numbers (not booleans), else ``string`` (values other than text as JSON)."""
    axes: list[str] = (list(cases[0]["axes"]) if cases and cases[0].get("axes")
                       else list(dict.fromkeys(k for c in cases for k in c["labels"])))
    out = {}
    for a in axes:
        vals = [c["labels"].get(a) for c in cases if c["labels"].get(a) is not None]
        num = bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        out[a] = "float64" if num else "string"
    return out


def axis_value(v: Any, kind: str) -> Any:
    """An axis label as its column holds it: a float, text, or other values as JSON."""
    if v is None:
        return None
    if kind == "float64":
        return float(v)
    return v if isinstance(v, str) else json.dumps(v)


def row_schema(types: dict[str, str]) -> pa.Schema:
    """The declared Arrow schema of every row of a sweep with these axes (``axis_types``)."""
    import pyarrow as pa  # heavy: Arrow

    t = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    return pa.schema([pa.field(n, t[k]) for n, k in ROW_HEAD]
                     + [pa.field(f"axis:{a}", t[k]) for a, k in types.items()]
                     + [pa.field(n, t[k]) for n, k in ROW_BODY])


def schema_text(schema: pa.Schema) -> list[list[str]]:
    """A schema as [[name, type], ...] (recorded in sweep.json)."""
    return [[f.name, str(f.type)] for f in schema]


def write_row(out: Path, row: dict[str, Any], schema: pa.Schema) -> None:
    """One Parquet file per case with the declared schema (every column, nulls where a case
    left one empty, so every file of the dataset agrees), written to a hidden temporary name
    (``fleetopt.atomic.temp_name``) and renamed; nothing is left behind on failure."""
    import pyarrow as pa  # heavy: Arrow
    import pyarrow.parquet as pq

    extra = set(row) - set(schema.names)
    if extra:
        raise ValueError(f"row columns not in the declared schema: {sorted(extra)}")
    d = out / "cases"
    d.mkdir(parents=True, exist_ok=True)
    name = f"{row['case_id']}.parquet"
    tmp = d / temp_name(name)
    try:
        pq.write_table(pa.Table.from_pylist([row], schema=schema), tmp)
        os.replace(tmp, d / name)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:                     # a read-only folder: nothing was created there
            pass
        raise


def conform_rows(cdir: Path, schema: pa.Schema) -> tuple[int, int]:
    """Bring rows written with another schema (an earlier fleetopt, another spec's axes) to
    ``schema``: missing columns added as nulls, types cast, columns in order, each file
    rewritten atomically; a row that cannot be cast is removed, so its case runs again.
    Returns (rewritten, removed)."""
    import pyarrow as pa  # heavy: Arrow
    import pyarrow.parquet as pq

    rewritten = removed = 0
    for q in sorted(cdir.glob("*.parquet")):
        try:
            if pq.read_schema(q).equals(schema, check_metadata=False):
                continue
            t = pq.read_table(q)
            cols = []
            for f in schema:
                if f.name in t.column_names:
                    c = t.column(f.name)
                    cols.append(c if c.type == f.type else c.cast(f.type))
                else:
                    cols.append(pa.nulls(len(t), f.type))
            fixed = pa.Table.from_arrays(cols, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError):
            q.unlink(missing_ok=True)       # not readable or not castable: the case runs again
            removed += 1
            continue
        tmp = q.parent / temp_name(q.name)
        try:
            pq.write_table(fixed, tmp)
            os.replace(tmp, q)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        rewritten += 1
    return rewritten, removed
