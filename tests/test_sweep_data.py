"""Sweep data: one declared Arrow schema for every row (failed and infeasible rows too, and
rows of resumed sweeps), read as one table by pandas, pyarrow.dataset, duckdb and polars;
Dask workers that share no folder with the client."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from fleetopt.sweeps import expand, load_spec, run_sweep
from fleetopt.sweeps.remote import portable, solve_chunk
from fleetopt.sweeps.rows import METRICS, row_schema

REPO = Path(__file__).resolve().parents[1]
INST = REPO / "instances"
AZ = INST / "azure-conv-h100.yaml"


def failing_spec(tmp_path: Path) -> Path:
    """Three solved cases (with the paper's two-pool baseline, so every metric applies),
    one that fails (max_throughput without a cap) and one infeasible (a tiny cap)."""
    p = tmp_path / "spec.yaml"
    p.write_text(f"schema_version: 1\nname: f\nbase: {AZ}\ncases:\n"
                 f"  - {{workload.arrival_rate: 50, pools.paper_boundary: 4096}}\n"
                 f"  - {{workload.arrival_rate: 100, pools.paper_boundary: 4096}}\n"
                 f"  - {{workload.arrival_rate: 200, pools.paper_boundary: 4096}}\n"
                 f"  - {{workload.arrival_rate: 100, objective: max_throughput}}\n"
                 f"  - {{workload.arrival_rate: 100, power.facility_cap_mw: 0.001}}\n")
    return p


def declared(spec: Path) -> pa.Schema:
    cases = expand(*load_spec(spec))
    return row_schema(cases[0]["axis_types"])


def check_one_table(out: Path, schema: pa.Schema, solved: int) -> None:
    """Every file has the declared schema; pyarrow.dataset, duckdb, polars and pandas read
    the folder as one table with every column; metrics non-null on the solved rows."""
    files = sorted((out / "cases").glob("*.parquet"))
    assert files and all(pq.read_schema(f).equals(schema, check_metadata=False) for f in files)
    t = ds.dataset(out / "cases", format="parquet").to_table()
    assert t.schema.equals(schema, check_metadata=False) and t.num_rows == len(files)
    rows = t.to_pylist()
    ok = [r for r in rows if r["status"] in ("optimal", "time_limit")]
    bad = [r for r in rows if r["status"] not in ("optimal", "time_limit")]
    assert len(ok) == solved and bad and all(r["error"] for r in bad)
    for r in ok:
        missing = [m for m in METRICS if r[m] is None and m != "demand_scale"]
        assert not missing, missing
    for r in bad:
        assert all(r[m] is None for m in ("tokens_per_joule", "gpus", "topology"))

    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install duckdb)")
    con = duckdb.connect()
    res = con.execute(f"SELECT * FROM read_parquet('{out / 'cases'}/*.parquet')")
    cols = [d[0] for d in res.description]
    got = res.fetchall()
    assert cols == schema.names and len(got) == len(files)
    n_ok = con.execute(f"SELECT count(*) FROM read_parquet('{out / 'cases'}/*.parquet') "
                       f"WHERE status = 'optimal' AND tokens_per_joule IS NOT NULL AND gpus IS NOT NULL").fetchone()[0]
    assert n_ok == solved
    try:
        import polars as pl
    except ImportError:
        pl = None
    if pl is not None:
        df = pl.read_parquet(str(out / "cases" / "*.parquet"))
        assert df.columns == schema.names and df.height == len(files)
    import pandas as pd

    assert list(pd.read_parquet(out / "cases").columns) == schema.names


def test_failing_and_infeasible_rows_share_the_declared_schema(tmp_path):
    spec = failing_spec(tmp_path)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        r = run_sweep(str(spec), str(out))
    finally:
        os.umask(old)
    assert r["failed"] == 1 and r["infeasible"] == 1 and r["done"] == 5
    import stat

    assert {stat.S_IMODE(f.stat().st_mode) for f in out.rglob("*") if f.is_file() and f.name != ".lock"} == {0o644}
    schema = declared(spec)
    assert schema.names[:3] == ["case_id", "instance", "overrides"] and set(METRICS) <= set(schema.names)
    assert json.loads((out / "sweep.json").read_text())["row_schema"][0] == ["case_id", "string"]
    check_one_table(out, schema, solved=3)


def test_a_resumed_sweep_brings_old_rows_to_the_schema(tmp_path):
    """Rows an earlier fleetopt wrote with fewer columns (16 for a failed case, typed by
    value) are rewritten to the declared schema on resume; their cases are not run again."""
    spec = failing_spec(tmp_path)
    out = tmp_path / "out"
    run_sweep(str(spec), str(out))
    cdir = out / "cases"
    schema = declared(spec)
    keep = ["case_id", "instance", "overrides", "axis:workload.arrival_rate", "axis:pools.paper_boundary",
            "axis:objective", "axis:power.facility_cap_mw", "status", "error", "warnings", "seconds"]
    for f in cdir.glob("*.parquet"):                        # as an older fleetopt left them
        t = pq.read_table(f)
        if t.column("status")[0].as_py() == "optimal":     # every column, in another order, typed by value
            old = t.select(list(reversed(t.column_names)))
            old = old.set_column(old.column_names.index("gpus"), "gpus", old.column("gpus").cast(pa.float64()))
        else:                                               # a failed row: 11 columns
            old = t.select([c for c in keep if c in t.column_names])
        pq.write_table(old, f)
    manifest = json.loads((out / "sweep.json").read_text())
    manifest.pop("row_schema")
    (out / "sweep.json").write_text(json.dumps(manifest))
    r = run_sweep(str(spec), str(out))
    assert r["done"] == 0 and r["skipped"] == 5
    check_one_table(out, schema, solved=3)
    # the solved rows kept what they had
    t = ds.dataset(cdir, format="parquet").to_table().to_pylist()
    assert all(x["tokens_per_joule"] > 0 for x in t if x["status"] == "optimal")


def test_mixed_axis_values_get_one_column_type(tmp_path):
    """Axes some cases leave unset (a number, and a list written as JSON text): one type
    per column over the whole spec, not per row's value."""
    p = tmp_path / "spec.yaml"
    p.write_text(f"schema_version: 1\nname: m\nbase: {AZ}\ncases:\n"
                 f"  - {{workload.arrival_rate: 50, power.facility_cap_mw: 5}}\n"
                 f"  - {{workload.arrival_rate: 60, pools.admission: [paged]}}\n")
    out = tmp_path / "out"
    run_sweep(str(p), str(out))
    schema = declared(p)
    assert schema.field("axis:workload.arrival_rate").type == pa.float64()
    assert schema.field("axis:power.facility_cap_mw").type == pa.float64()
    assert schema.field("axis:pools.admission").type == pa.string()
    t = ds.dataset(out / "cases", format="parquet").to_table()
    assert t.schema.equals(schema, check_metadata=False)
    assert sorted(t.column("axis:power.facility_cap_mw").to_pylist(), key=str) == [5.0, None]
    assert sorted(t.column("axis:pools.admission").to_pylist(), key=str) == [None, '["paged"]']


# ---- Dask without a shared filesystem ---------------------------------------------------

def client_instance(folder: Path) -> Path:
    """azure-conv-h100 with its histogram in a CSV file beside it (so workers need a file)."""
    import yaml

    folder.mkdir(parents=True)
    d = yaml.safe_load(AZ.read_text())
    cells = d["workload"]["distribution"].pop("cells")
    (folder / "data").mkdir()
    (folder / "data" / "hist.csv").write_text("input_bin_lo,input_bin_hi,output_bin_lo,output_bin_hi,fraction\n"
                                               + "".join(",".join(str(x) for x in c) + "\n" for c in cells))
    d["workload"]["distribution"]["path"] = "data/hist.csv"
    p = folder / "inst.yaml"
    p.write_text(yaml.safe_dump(d))
    spec = folder / "spec.yaml"
    spec.write_text("schema_version: 1\nname: d\nbase: inst.yaml\ngrid:\n  workload.arrival_rate: [50, 100, 150, 200]\n")
    return spec


def test_a_worker_solves_from_what_it_is_sent(tmp_path):
    """The worker's function reads nothing of the client's: the input files are gone from
    the client's folder by the time it runs, and it writes no row itself."""
    spec = client_instance(tmp_path / "client")
    cases = expand(*load_spec(spec))
    sent, blobs = portable(cases)
    assert len(blobs) == 1 and all(c["input_files"][0][2] == "hist.csv" for c in sent)
    shutil.move(tmp_path / "client", tmp_path / "gone")
    from fleetopt.catalog import load_catalog
    from fleetopt.physics.calibration import active_calibration, active_label, active_source

    rows = solve_chunk(sent, blobs, True, load_catalog(), (active_calibration(), active_label(), active_source()))
    assert [r["status"] for r in rows] == ["optimal"] * 4 and all(r["tokens_per_joule"] > 0 for r in rows)
    assert not (tmp_path / "client").exists()


def test_dask_workers_in_another_directory_rows_written_by_the_client(tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster

    spec = client_instance(tmp_path / "client")
    wdir = tmp_path / "worker"
    wdir.mkdir()
    monkeypatch.chdir(tmp_path / "client")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      local_directory=str(tmp_path / "scratch")) as cluster:
        with Client(cluster) as c:
            c.run(os.chdir, str(wdir))
            assert set(c.run(os.getcwd).values()) == {str(wdir)}
        r = run_sweep("spec.yaml", "out", scheduler=cluster.scheduler_address)        # relative: the client's
        assert r["done"] == 4 and r["failed"] == 0
        again = run_sweep("spec.yaml", "out", scheduler=cluster.scheduler_address)
        assert again["done"] == 0 and again["skipped"] == 4                            # resumed: nothing re-run
    files = sorted((tmp_path / "client" / "out" / "cases").glob("*.parquet"))
    assert len(files) == 4
    assert not any(wdir.rglob("*"))                         # the workers wrote nothing where they run
    check_schema = declared(spec)
    assert all(pq.read_schema(f).equals(check_schema, check_metadata=False) for f in files)
    assert {x["status"] for x in ds.dataset(files[0].parent).to_table().to_pylist()} == {"optimal"}


# ---- sweep-report plots --------------------------------------------------------------------

def _pixels_of(png: Path, colour: str) -> int:
    import numpy as np
    from matplotlib.image import imread

    img = (imread(str(png))[:, :, :3] * 255).round().astype(int)
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - rgb).sum(axis=2) <= 3).sum())


def grid_with_a_single_pool_plan(tmp_path: Path) -> Path:
    """Rate x cap on azure-conv-h100 with max_pools 1 in one case (a single-pool plan), an
    infeasible cap, and two GPU types (H100 and B200 plans)."""
    p = tmp_path / "spec.yaml"
    p.write_text(f"schema_version: 1\nname: r\nbase: {AZ}\ngrid:\n  workload.arrival_rate: [25, 100, 400]\n"
                 f"  power.facility_cap_mw: [0.02, 0.5, 2.0]\n  pools.max_pools: [1, 3]\n")
    return p


def test_sweep_report_colours_fixed_across_processes_and_single_pool_plans_shown(tmp_path):
    import subprocess
    import sys

    from fleetopt.plan_report.colours import gpu_colour
    from fleetopt.sweeps.report import parse_topology

    spec = grid_with_a_single_pool_plan(tmp_path)
    out = tmp_path / "out"
    run_sweep(str(spec), str(out))
    shots = []
    for seed in ("1", "2"):                                # two processes, two string-hash seeds
        subprocess.run([sys.executable, "-m", "fleetopt", "sweep-report", str(out), "--format", "json"], check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed})
        rep = out / "report"
        shots.append({p.name: p.read_bytes() for p in rep.glob("*.png")})
        shutil.copy(rep / "boundaries_workload_arrival_rate.png", tmp_path / f"b{seed}.png")
    assert shots[0] == shots[1] and "boundaries_workload_arrival_rate.png" in shots[0]
    t = ds.dataset(out / "cases", format="parquet").to_table().to_pylist()
    solved = [r for r in t if r["status"] == "optimal"]
    gpus = {p["gpu"] for r in solved for p in parse_topology(r["topology"])}
    assert len(gpus) >= 1 and any(r["pools"] == 1 for r in solved)
    for g in gpus:                                         # each GPU drawn in its fixed colour, in both runs
        for seed in ("1", "2"):
            assert _pixels_of(tmp_path / f"b{seed}.png", gpu_colour(g)) > 200, g
    md = (out / "report" / "report.md").read_text()
    assert "```" not in md and "| infeasible |" in md and "## against the power cap" in md
    assert {"heatmap_tokens_per_joule.png", "heatmap_gpus.png", "power_cap.png"} <= set(shots[0])


def test_parse_topology_reads_every_kind_of_pool():
    from fleetopt.sweeps.report import parse_topology

    assert parse_topology("16384:b200x2:paged") == [{"lo": 0.0, "hi": 16384.0, "gpu": "b200", "share": 1.0}]
    mixed = parse_topology("4096:h100-sxmx8:paged,16384:b200x2@0.5,16384:gb200x2@0.5")
    assert [(p["lo"], p["hi"], p["gpu"], p["share"]) for p in mixed] == [
        (0.0, 4096.0, "h100-sxm", 1.0), (4096.0, 16384.0, "b200", 0.5), (4096.0, 16384.0, "gb200", 0.5)]
    pd_ = parse_topology("640:pd(b200x4/h100-sxmx8:paged),16384:mi300xx8:reserve:cap600")
    assert [(p["hi"], p["gpu"]) for p in pd_] == [(640.0, "h100-sxm"), (16384.0, "mi300x")]
