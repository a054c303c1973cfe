"""A sweep on a Dask cluster: workers share nothing with the client but the network.

Each chunk travels with the contents of the files its instances read (``portable``), the
client's catalog and calibration; a worker writes those files under its temporary folder
(by content hash, once), points the instances at them (``localise``), solves and returns
the rows, which the client writes atomically as each chunk completes (no shared
filesystem; resume and one row per case as with local workers).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetopt.atomic import write_atomic
from fleetopt.catalog import Catalog, load_catalog
from fleetopt.errors import FleetoptError
from fleetopt.instance import MixtureWorkload
from fleetopt.physics.calibration import (
    Calibration,
    active_calibration,
    active_label,
    active_source,
    use_calibration,
)
from fleetopt.records import replace
from fleetopt.sweeps.rows import row_schema, write_row
from fleetopt.sweeps.worker import brief, solve_case
from fleetopt.workload_files import data_files, resolve_path


def portable(chunk: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """A chunk a worker on another machine can solve: each case lists the files its
    instance reads as (component, content hash, file name), and the contents travel once
    per chunk (hash -> bytes)."""
    blobs: dict[str, bytes] = {}
    out = []
    for c in chunk:
        refs = []
        for name, rel in data_files(c["inst"].workload):
            path = resolve_path(Path(c["base"]), rel)
            try:
                data = path.read_bytes()
            except OSError as e:
                raise FleetoptError(f"sweep: cannot read '{path}' to send it to the workers ({e.strerror})") from None
            digest = hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            refs.append((name, digest, path.name))
        out.append({**c, "input_files": refs})
    return out, blobs


def localise(case: dict[str, Any], blobs: dict[str, bytes], root: Path) -> dict[str, Any]:
    """On a worker: the case's input files written under ``root`` (by content hash, once
    per worker) and its instance pointed at them."""
    inst = case["inst"]
    for name, digest, fname in case.get("input_files") or ():
        path = root / digest / fname
        if not path.is_file():
            write_atomic(path, blobs[digest])
        dist = inst.workload.distribution
        if name is None:
            dist = replace(dist, path=str(path))
        else:
            assert isinstance(dist, MixtureWorkload)
            comp = dist.components[name]
            comps = {**dist.components, name: replace(comp, workload=replace(comp.workload, path=str(path)))}
            dist = replace(dist, components=comps)
        inst = replace(inst, workload=replace(inst.workload, distribution=dist))
    return {**case, "inst": inst}


def solve_chunk(cases: list[dict[str, Any]], blobs: dict[str, bytes], reuse: bool, catalog: Catalog,
                calibration: tuple[Calibration, str, str]) -> list[dict[str, Any]]:
    """A Dask worker's chunk: the rows are returned to the client, which writes them;
    nothing is read from or written to the client's folders.  ``catalog``: the client's
    loaded catalog; ``calibration``: its (Calibration, label, source) in use."""
    use_calibration(*calibration)
    root = Path(tempfile.gettempdir()) / "fleetopt-sweep-inputs"
    return [solve_case(localise(c, blobs, root), reuse, catalog=catalog) for c in cases]


def run_dask(scheduler: str, parts: list[list[dict[str, Any]]], out_p: Path, reuse: bool,
             catalog_files: tuple[str, ...], took: Callable[[list[dict[str, Any]]], None]) -> None:
    """The chunks on a Dask cluster: each worker gets its cases, the files they read, the
    catalog and the calibration, and returns rows; the client writes each row atomically as
    its chunk completes (a chunk Dask runs twice after a worker died is written once per
    completion, to the same name: still one row per case)."""
    from dask.distributed import Client, as_completed  # heavy: Dask

    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise FleetoptError(f"--scheduler: cannot reach '{scheduler}' ({str(e).splitlines()[0]})") from None
    cat = load_catalog(tuple(catalog_files))
    cal = (active_calibration(), active_label(), active_source())
    schema = row_schema(parts[0][0]["axis_types"])
    with client:
        futs = []
        for p in parts:
            cases, blobs = portable(p)
            futs.append(client.submit(solve_chunk, cases, blobs, reuse, cat, cal, pure=False))
        try:
            for fut in as_completed(futs):
                rows = fut.result()
                for row in rows:
                    write_row(out_p, row, schema)
                took([brief(r) for r in rows])
        except BaseException:
            client.cancel(futs)
            raise
