"""Sweeps: expansion, resume, failures recorded, reuse equal to a fresh solve, SIGKILL, Dask."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fleetopt import InfeasibleError, load_instance, solve
from fleetopt.cli import main
from fleetopt.sweeps import expand, load_spec, run_sweep

INST = Path(__file__).resolve().parents[1] / "instances"
BASE = INST / "azure-chat-longctx-mix.yaml"


def write_spec(tmp_path: Path, rates, shares=(0.0, 0.1), extra: str = "") -> Path:
    share_axis = "\n".join(
        f"    - {{value: {s}, set: {{workload.distribution.components.long_documents.weight: {s}, "
        f"workload.distribution.components.chat.weight: {1 - s}}}}}" for s in shares)
    p = tmp_path / "spec.yaml"
    p.write_text(f"schema_version: 1\nname: t\nbase: {BASE}\ngrid:\n  long_context_share:\n{share_axis}\n"
                 f"  workload.arrival_rate: {list(rates)}\n{extra}")
    return p


def rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "cases")


def test_grid_expansion_and_stable_ids(tmp_path):
    spec, d = load_spec(write_spec(tmp_path, [50, 100, 200]))
    a = expand(spec, d)
    assert len(a) == 6
    assert a[0]["overrides"][:2] == ["workload.distribution.components.long_documents.weight=0.0",
                                     "workload.distribution.components.chat.weight=1.0"]
    b = expand(*load_spec(write_spec(tmp_path, [200, 100, 50])))
    assert {c["case_id"] for c in a} == {c["case_id"] for c in b}       # ids do not depend on order


def test_sweep_writes_one_row_per_case_and_resumes(tmp_path):
    spec = write_spec(tmp_path, [50, 100, 200])
    out = tmp_path / "out"
    r1 = run_sweep(str(spec), str(out))
    assert r1["done"] == 6 and r1["failed"] == 0
    df = rows(out)
    assert len(df) == 6 and df["case_id"].is_unique
    r2 = run_sweep(str(spec), str(out))
    assert r2["done"] == 0 and r2["skipped"] == 6


def test_reused_columns_give_the_same_plan_as_a_fresh_solve(tmp_path):
    spec = write_spec(tmp_path, [50, 400], shares=(0.1,),
                      extra="  power.facility_cap_mw: [0.5, 5.0]\n")
    out = tmp_path / "out"
    run_sweep(str(spec), str(out))
    df = rows(out)
    assert (df["status"] == "optimal").sum() >= 3
    for _, r in df.iterrows():
        inst = load_instance(BASE, json.loads(r["overrides"]))
        if r["status"] == "infeasible":
            with pytest.raises(InfeasibleError):
                solve(inst).to_dict()
            continue
        fresh = solve(inst).to_dict()
        assert r["topology"] == fresh["topology"]
        assert r["tokens_per_joule"] == pytest.approx(fresh["fleet"]["tokens_per_joule"], rel=1e-12)


def test_failing_case_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A case that fails while solving is a row; the sweep goes on."""
    p = tmp_path / "spec.yaml"
    p.write_text(f"schema_version: 1\nname: f\nbase: {BASE}\ncases:\n  - {{workload.arrival_rate: 100}}\n"
                 f"  - {{objective: max_throughput}}\n  - {{power.facility_cap_mw: 0.001}}\n")
    out = tmp_path / "out"
    r = run_sweep(str(p), str(out))
    assert r["done"] == 3 and r["failed"] == 1 and r["infeasible"] == 1
    df = rows(out).set_index("status")
    assert "max_throughput needs power.facility_cap_mw" in df.loc["failed", "error"]
    assert "power cap short" in df.loc["infeasible", "error"]


def test_an_invalid_case_refuses_the_spec_before_anything_runs(tmp_path, capsys):
    p = tmp_path / "spec.yaml"
    p.write_text(f"schema_version: 1\nname: f\nbase: {BASE}\ncases:\n  - {{workload.arrival_rate: 100}}\n"
                 f"  - {{slo.ttft_p99_ms: -5}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "case 2 (slo.ttft_p99_ms=-5): slo.ttft_p99_ms: must be > 0, got -5" in err and "\n" not in err
    assert not out.exists()


def test_sigkill_mid_sweep_then_resume_gives_exactly_one_row_per_case(tmp_path):
    spec = write_spec(tmp_path, [25, 50, 75, 100, 150, 200, 300, 400, 600, 800], shares=(0.0, 0.05, 0.1, 0.2))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fleetopt", "sweep", str(spec), "--out", str(out), "--workers", "2",
           "--format", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        n = len(list((out / "cases").glob("*.parquet"))) if (out / "cases").exists() else 0
        if n >= 5:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((out / "cases").glob("*.parquet")))
    assert 5 <= partial < 40
    r = run_sweep(str(spec), str(out), workers=2)
    assert r["skipped"] == partial and r["done"] == 40 - partial
    df = rows(out)
    assert len(df) == 40 and df["case_id"].is_unique and (df["status"] == "optimal").all()


def test_dask_local_cluster_runs_the_sweep(tmp_path):
    from dask.distributed import LocalCluster

    spec = write_spec(tmp_path, [50, 100, 200])
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        r = run_sweep(str(spec), str(out), scheduler=cluster.scheduler_address)
    assert r["done"] == 6 and r["failed"] == 0
    assert len(rows(out)) == 6


def test_sweep_report_writes_tables_and_plots(tmp_path, capsys):
    spec = write_spec(tmp_path, [50, 100, 200])
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cases"] == 6 and summary["done"] == 6
    assert main(["sweep-report", str(out)]) == 0
    rep = out / "report"
    assert (rep / "report.md").exists() and (rep / "heatmap_tokens_per_joule.png").exists()
    assert "tokens per joule" in (rep / "report.md").read_text()
    assert main(["sweep-report", str(tmp_path / "nothing")]) == 2


def test_bad_spec_is_one_line(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(f"schema_version: 1\nname: b\nbase: {BASE}\n")
    assert main(["sweep", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "exactly one of 'grid', 'cases' or 'random'" in err and "\n" not in err


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    spec = write_spec(tmp_path, [50])
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--scheduler", "nonsense"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fleetopt: error: --scheduler:") and "\n" not in err
