"""One sweep case solved and written as one Parquet row, in a worker process.

Cases that differ only in right-hand sides (power cap, inventories) share sized columns;
cases that differ only in the arrival rate share routed traffic and pool shapes (the
driver sends them to one worker together).  A case that fails while solving is a row with
its error.  A local worker writes each row (``fleetopt.sweeps.rows``: to a hidden temporary,
renamed: a kill never leaves half a row); a Dask worker returns it (``fleetopt.sweeps.remote``).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import warnings
from pathlib import Path
from typing import Any

from fleetopt.atomic import close_inherited_locks
from fleetopt.catalog import Catalog, load_catalog
from fleetopt.columns import Columns, generate
from fleetopt.errors import FleetoptWarning, InfeasibleError, NoPlanInTimeError
from fleetopt.instance import Instance
from fleetopt.loading import remember_source
from fleetopt.problem import Problem
from fleetopt.procs import die_with_parent, ignore_interrupts
from fleetopt.records import to_builtins
from fleetopt.solver import finish, solve
from fleetopt.sweeps.rows import axis_types, axis_value, row_schema, write_row
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


def solve_case(case: dict[str, Any], reuse: bool = True, catalog_files: tuple[str, ...] = (),
               catalog: Catalog | None = None) -> dict[str, Any]:
    """Solve one case; returns its row (every column of ``rows.row_schema``; a failed or
    infeasible case has nulls, its ``status`` and its ``error``).  ``reuse=False`` solves
    from scratch (the benchmark's baseline); ``catalog``: the loaded catalog (else read
    from ``catalog_files``)."""
    t0 = time.perf_counter()
    types = case.get("axis_types") or axis_types([case])
    row: dict[str, Any] = {"case_id": case["case_id"], "instance": Path(case["instance"]).stem,
                           "overrides": json.dumps(case["overrides"])}
    for k in types:                                 # every axis of the spec, so all rows agree
        row[f"axis:{k}"] = axis_value(case["labels"].get(k), types[k])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", FleetoptWarning)
        try:
            base = Path(case["base"])
            inst = remember_source(case["inst"], "", base)
            cat = catalog if catalog is not None else load_catalog(tuple(catalog_files))
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
    return row


def run_case(case: dict[str, Any], out_dir: str, reuse: bool = True,
             catalog_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """Solve one case and write its row atomically; returns the row."""
    row = solve_case(case, reuse, catalog_files)
    write_row(Path(out_dir), row, row_schema(case.get("axis_types") or axis_types([case])))
    return row


def run_chunk(cases: list[dict[str, Any]], out_dir: str, reuse: bool = True,
              catalog_files: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A local worker's chunk: each case solved and its row written (the folder is local);
    the brief of each row."""
    return [brief(run_case(c, out_dir, reuse, catalog_files)) for c in cases]


def brief(row: dict[str, Any]) -> dict[str, Any]:
    """What the driver needs of a row: id, status, error."""
    return {"case_id": row["case_id"], "status": row["status"], "error": row.get("error")}
