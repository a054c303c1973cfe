"""Running a sweep: the cases still to run, on local processes or a Dask cluster, resumable.

An output folder belongs to one spec (``OUT/sweep.json`` names it, and is rewritten only
when it changes, so a finished sweep resumes on a read-only disk); another spec is
refused unless ``--force``.  One sweep at a time writes a folder (an ``flock`` the kernel
drops when its holder dies).  Ctrl-C or SIGTERM stops the workers at once and cancels
the queued cases (finished rows stay); local workers die with their parent, however it
ends; temporaries of killed runs are removed on the next; rows of cases no longer in the
spec are removed.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetopt.atomic import FolderLock, clean_stale, os_error, write_atomic
from fleetopt.catalog import load_catalog
from fleetopt.errors import FleetoptError, Interrupted
from fleetopt.procs import stop_on_signals
from fleetopt.records import to_builtins
from fleetopt.render import to_json
from fleetopt.sweeps.remote import run_dask
from fleetopt.sweeps.rows import conform_rows, row_schema, schema_text
from fleetopt.sweeps.spec import SweepSpec, expand, group_key, load_spec
from fleetopt.sweeps.worker import run_chunk, worker_init

if TYPE_CHECKING:
    import pyarrow as pa


def finished(out: Path, retry_failed: bool) -> set[str]:
    """The ids of the cases with a row (less the failed ones with ``retry_failed``)."""
    d = out / "cases"
    if not d.exists():
        return set()
    done = {p.stem for p in d.glob("*.parquet")}
    if retry_failed and done:
        import pandas as pd  # heavy: pandas

        st = pd.read_parquet(d, columns=["case_id", "status"])
        done -= set(st.loc[st["status"] == "failed", "case_id"])
    return done


def chunks(cases: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Cases grouped for reuse (``_group_key``), each group cut into chunks of ``size``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cases:
        groups.setdefault(group_key(c), []).append(c)
    out = []
    for g in groups.values():
        out += [g[i:i + size] for i in range(0, len(g), size)]
    return out


MANIFEST = "sweep.json"


def _manifest(spec: SweepSpec, spec_path: str, cases: list[dict[str, Any]], schema: pa.Schema) -> str:
    """The text of ``sweep.json``: the spec, its path, the rows' schema and its cases' ids,
    labels, overrides."""
    return to_json({"spec": to_builtins(spec), "spec_path": str(Path(spec_path).resolve()),
                    "row_schema": schema_text(schema),
                    "cases": [{k: c[k] for k in ("case_id", "labels", "overrides")} for c in cases]}) + "\n"


def _owner_problem(out: Path, spec: SweepSpec, spec_path: str) -> str | None:
    """Why ``out`` holds another spec's results (None when it is this spec's, or new)."""
    try:
        held = json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        if (out / "cases").is_dir() and any((out / "cases").glob("*.parquet")):
            return "results of a sweep it does not name (no sweep.json)"
        return None
    except (OSError, ValueError):
        return "a sweep.json fleetopt cannot read"
    name = (held.get("spec") or {}).get("name") if isinstance(held, dict) else None
    path = held.get("spec_path") if isinstance(held, dict) else None
    if name == spec.name and path == str(Path(spec_path).resolve()):
        return None
    return f"the results of sweep '{name}' (spec {path})"


def _stop_local(ex: Any) -> None:
    """Stop a ProcessPoolExecutor now: queued work cancelled, workers killed (a case cut
    short leaves no row: rows are renamed into place only when whole)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())     # the executor has no public kill
    ex.shutdown(wait=False, cancel_futures=True)
    for pr in procs:
        try:
            pr.kill()
        except (OSError, AttributeError):
            pass
    for pr in procs:
        try:
            pr.join(5)
        except (OSError, AttributeError, AssertionError):
            pass


def run_sweep(spec_path: str, out: str, workers: int = 1, scheduler: str | None = None,
              retry_failed: bool = False, progress: bool = False, chunk_size: int = 10, reuse: bool = True,
              force: bool = False, catalog_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run (or resume) a sweep; see the module docstring for what survives what.

    In order: the spec is read and every case built and validated (nothing is written for
    a bad spec); ``out`` is refused when it holds another spec's results (unless
    ``force``); under the folder's lock the rows of cases no longer in the spec are
    removed, rows of another schema are brought to this one and the manifest is written
    when it changed; temporaries of killed runs are removed; then the cases without a row
    run (``_run``).  Returns the summary: cases, done, failed, infeasible, skipped,
    removed, seconds, cases per second and the first errors."""
    spec, spec_dir = load_spec(spec_path)
    cases = expand(spec, spec_dir, load_catalog(tuple(catalog_files)), str(spec_path))
    out_p = Path(out)
    if out_p.exists() and not out_p.is_dir():
        raise FleetoptError(f"--out: '{out}' exists and is not a folder")
    if out_p.is_dir():
        other = _owner_problem(out_p, spec, spec_path)
        if other and not force:
            raise FleetoptError(f"--out: '{out}' holds {other}; give another folder, or --force to replace them "
                                f"with this spec's")
    try:
        out_p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, "--out", out_p) from None
    schema = row_schema(cases[0]["axis_types"] if cases else {})
    with FolderLock(out_p, "--out"):
        manifest = _manifest(spec, spec_path, cases, schema)
        try:
            current = (out_p / MANIFEST).read_text()
        except (OSError, UnicodeDecodeError):
            current = None
        cdir = out_p / "cases"
        ids = {c["case_id"] for c in cases}
        stale = [q for q in cdir.glob("*.parquet") if q.stem not in ids] if cdir.is_dir() else []
        try:
            for q in stale:                     # cases no longer in the spec, or whose instance changed
                q.unlink()
            if current != manifest:             # rows of another fleetopt or spec: to the declared schema,
                if cdir.is_dir():               # then the manifest (written only when it changes, so a
                    conform_rows(cdir, schema)  # finished sweep resumes read-only)
                write_atomic(out_p / MANIFEST, manifest)
        except OSError as e:
            raise os_error(e, "--out", out_p) from None
        if cdir.is_dir():
            clean_stale(cdir)
        return _run(spec, cases, out_p, workers, scheduler, retry_failed, progress, chunk_size, reuse,
                    tuple(catalog_files), len(stale))


def _run(spec: SweepSpec, cases: list[dict[str, Any]], out_p: Path, workers: int, scheduler: str | None,
         retry_failed: bool, progress: bool, chunk_size: int, reuse: bool, catalog_files: tuple[str, ...],
         removed: int) -> dict[str, Any]:
    """The cases still to run, on local workers or a Dask cluster; the sweep's summary."""
    skip = finished(out_p, retry_failed)
    todo = [c for c in cases if c["case_id"] not in skip]
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm import tqdm  # heavy: progress bars

        bar = tqdm(total=len(todo), unit="case", desc=spec.name, dynamic_ncols=True, delay=2.0)   # on stderr
    results: list[dict] = []

    def took(rows: list[dict[str, Any]]) -> None:
        results.extend(rows)
        if bar is not None:
            bar.update(len(rows))

    def interrupted(signum: int) -> None:
        raise Interrupted()

    parts = chunks(todo, chunk_size)
    try:
        with stop_on_signals(interrupted):
            if not parts:
                pass
            elif scheduler:
                run_dask(scheduler, parts, out_p, reuse, catalog_files, took)
            elif workers <= 1:
                for p in parts:
                    took(run_chunk(p, str(out_p), reuse, catalog_files))
            else:
                ex = ProcessPoolExecutor(max_workers=min(workers, len(parts)), initializer=worker_init,
                                         initargs=(os.getpid(),))
                try:
                    futs = [ex.submit(run_chunk, p, str(out_p), reuse, catalog_files) for p in parts]
                    for fut in as_completed(futs):
                        took(fut.result())
                except BaseException:
                    _stop_local(ex)
                    raise
                ex.shutdown(wait=True)
    except Interrupted:                             # the workers are stopped: count what they wrote
        ids = {c["case_id"] for c in cases}
        have = sum(q.stem in ids for q in (out_p / "cases").glob("*.parquet"))
        raise Interrupted(f"sweep '{spec.name}': {have} of {len(cases)} cases have rows in {out_p / 'cases'}; "
                          f"run the same command again to resume") from None
    except OSError as e:                            # a row could not be written (full or read-only disk)
        raise os_error(e, "--out", out_p / "cases") from None
    finally:
        if bar is not None:
            bar.close()
    secs = time.perf_counter() - t0
    failed = [r for r in results if r["status"] == "failed"]
    return {"spec": spec.name, "out": str(out_p), "cases": len(cases), "skipped": len(cases) - len(todo),
            "done": len(results), "failed": len(failed),
            "infeasible": sum(r["status"] == "infeasible" for r in results),
            "removed_stale": removed,
            "seconds": secs, "cases_per_second": len(results) / secs if secs > 0 and results else None,
            "errors": [f"{r['case_id']}: {r['error']}" for r in failed[:10]]}

