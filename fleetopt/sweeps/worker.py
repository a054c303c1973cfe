"""One sweep case solved and written as one Parquet row, in a worker process.

Cases that differ only in right-hand sides (power cap, inventories) share sized columns;
cases that differ only in the arrival rate share routed traffic and pool shapes (the
driver sends them to one worker together).  A case that fails while solving is a row with
its error.  Each row is written to a hidden temporary and renamed: a kill never leaves
half a row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from fleetopt.atomic import close_inherited_locks, temp_name
from fleetopt.catalog import Catalog, load_catalog
from fleetopt.columns import Columns, generate
from fleetopt.errors import FleetoptWarning, InfeasibleError, NoPlanInTimeError
from fleetopt.instance import Instance
from fleetopt.loading import remember_source
from fleetopt.problem import Problem
from fleetopt.procs import die_with_parent, ignore_interrupts
from fleetopt.records import to_builtins
from fleetopt.solver import finish, solve
from fleetopt.sweeps.spec import column_key
from fleetopt.workload_files import load_workload

_CACHE: dict[str, Any] = {}       # column key -> (dist, rate, raw columns): cases differing in RHS only
_SHAPES: dict[str, Any] = {}      # rate-independent key -> generate()'s cache (routed traffic, pool shapes)


def _remember(d: dict[str, Any], key: str, value: Any, size: int = 16) -> Any:
    """Keep ``value`` under ``key``, the oldest entry dropped beyond ``size``."""
    if len(d) >= size:
        d.pop(next(iter(d)))
    d[key] = value
    return value


def worker_init(parent_pid: int) -> None:
    """A local worker: dies with its parent (``fleetopt.procs.die_with_parent``), leaves
    Ctrl-C and SIGTERM handling to the parent, which stops it itself."""
    die_with_parent(parent_pid)
    close_inherited_locks()
    ignore_interrupts()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _shape_key(inst: Instance, base: Path) -> str:
    """Everything the routed traffic and the pool shapes depend on (not the arrival rate,
    power, objective, solver, inventories or the utilisation cap)."""
    d = to_builtins(inst)
    d["workload"].pop("arrival_rate", None)
    for k in ("power", "objective", "solver", "name"):
        d.pop(k, None)
    d["slo"].pop("max_utilization", None)
    for g in d["gpus"]:
        g.pop("max_gpus", None)
    return json.dumps([str(base), d], sort_keys=True)


def _cached_problem(inst: Instance, base: Path, cat: Catalog, key: str) -> tuple[Problem, Columns]:
    """The case's problem and raw columns (reused across cases with the same column key;
    otherwise the routed traffic and pool shapes are reused across cases with the same
    shape key)."""
    hit = _CACHE.get(key)
    if hit is None:
        skey = _shape_key(inst, base)
        shapes = _SHAPES.get(skey)
        if shapes is None:
            dist, _ = load_workload(inst.workload, base)
            shapes = _remember(_SHAPES, skey, {"dist": dist})
        dist = shapes["dist"]
        rate = (load_workload(inst.workload, base)[1] if inst.workload.arrival_rate == "trace"
                else float(inst.workload.arrival_rate))
        problem = Problem.from_instance(inst, cat, dist=dist, rate=rate)
        hit = _remember(_CACHE, key, (dist, rate, generate(problem, cache=shapes)))
    dist, rate, raw = hit
    problem = Problem.from_instance(inst, cat, dist=dist, rate=rate)
    return problem, dataclasses.replace(raw, configs=list(problem.configs))     # inventories may differ


def run_case(case: dict[str, Any], out_dir: str, reuse: bool = True,
             catalog_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """Solve one case and write its row atomically; returns the row.  ``reuse=False`` solves
    from scratch (the benchmark's baseline)."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"case_id": case["case_id"], "instance": Path(case["instance"]).stem,
                           "overrides": json.dumps(case["overrides"])}
    for k in case.get("axes", case["labels"]):      # every axis of the spec, so all rows agree
        v = case["labels"].get(k)
        row[f"axis:{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", FleetoptWarning)
        try:
            base = Path(case["base"])
            inst = remember_source(case["inst"], "", base)
            cat = load_catalog(tuple(catalog_files))
            if inst.objective == "max_throughput" or not reuse:
                plan = solve(Problem.from_instance(inst, cat))
            else:
                problem, raw = _cached_problem(inst, base, cat, column_key(case))
                plan = finish(problem, raw, t0)
            row.update(plan.summary_row())
        except Exception as e:     # noqa: BLE001  (a failed case is a row, not a stopped sweep)
            row.update({"status": ("infeasible" if isinstance(e, InfeasibleError) else
                                   "no_plan_in_time" if isinstance(e, NoPlanInTimeError) else "failed"),
                        "error": f"{type(e).__name__}: {e}"})
    row["warnings"] = "; ".join(dict.fromkeys(str(w.message) for w in said
                                              if issubclass(w.category, FleetoptWarning))) or None
    row["seconds"] = time.perf_counter() - t0
    _write_row(Path(out_dir), row)
    return row


def run_chunk(cases: list[dict[str, Any]], out_dir: str, reuse: bool = True,
              catalog_files: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``run_case`` over a chunk of cases (one task of a worker); the brief of each row."""
    return [_brief(run_case(c, out_dir, reuse, catalog_files)) for c in cases]


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    """What the driver needs of a row: id, status, error."""
    return {"case_id": row["case_id"], "status": row["status"], "error": row.get("error")}


STR_COLS = ("case_id", "instance", "overrides", "status", "error", "topology", "boundaries", "gpu_types",
            "homog_topology", "warnings")
INT_COLS = ("pools", "instances_total", "gpus", "homog_gpus")
FLOAT_COLS = ("it_power_kw", "facility_power_kw", "tokens_per_joule", "tok_per_w_paper", "arrival_rate",
              "cost_per_hour", "energy_per_query_wh", "homog_tokens_per_joule", "two_pool_tokens_per_joule",
              "gain_vs_homog", "gap", "solver_seconds", "seconds")


def _arrow_type(name: str, value: Any) -> Any:
    """The Arrow type of a row's column (fixed per name; axes by their value)."""
    import pyarrow as pa  # heavy: Arrow

    if name in STR_COLS:
        return pa.string()
    if name in INT_COLS:
        return pa.int64()
    if isinstance(value, bool) or (name.startswith("axis:") and not isinstance(value, (int, float))):
        return pa.string()
    return pa.float64()


def _write_row(out: Path, row: dict[str, Any]) -> None:
    """One Parquet file per case, with a fixed schema (every column, so every file of the
    dataset agrees whatever a case left empty), written to a hidden temporary name
    (``fleetopt.files.temp_name``) and renamed; nothing is left behind on failure."""
    import pyarrow as pa  # heavy: Arrow
    import pyarrow.parquet as pq

    d = out / "cases"
    d.mkdir(parents=True, exist_ok=True)
    for c in STR_COLS + INT_COLS + FLOAT_COLS:
        row.setdefault(c, None)
    fields, cols = [], []
    for k, v in row.items():
        t = _arrow_type(k, v)
        if t == pa.string() and v is not None and not isinstance(v, str):
            v = json.dumps(v)
        fields.append(pa.field(k, t))
        cols.append(pa.array([v], type=t))
    name = f"{row['case_id']}.parquet"
    tmp = d / temp_name(name)
    try:
        pq.write_table(pa.Table.from_arrays(cols, schema=pa.schema(fields)), tmp)
        os.replace(tmp, d / name)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:                     # a read-only folder: nothing was created there
            pass
        raise
