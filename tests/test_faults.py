"""Faults: real refine and sweep processes killed at random (seeded) moments, Ctrl-C and
SIGTERM, a stale journal lock, a torn journal record, read-only and full disks (tmpfs
mounts, skipped where the platform does not allow them), edits of a base instance between
sweep runs, and output sets replaced as a whole."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from fleetopt.cli import main

REPO = Path(__file__).resolve().parents[1]
INST = REPO / "instances"
AZ = INST / "azure-conv-h100.yaml"
RNG = random.Random(20240817)           # the kill moments, reproducible


def fleetopt(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "fleetopt", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True, **kw)


def finish(p: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def wait_for(pred, timeout: float = 60.0, what: str = "") -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("fleetopt: warning:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- refine ------------------------------------------------------------------------------

def journal_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def sqlite_trials(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as c:
            return c.execute("select count(*) from trials").fetchone()[0]
    except sqlite3.Error:
        return 0


def load_study(storage: str):
    import optuna

    from fleetopt.refinement.journal import _journal_classes

    if "://" not in storage:
        storage = optuna.storages.JournalStorage(_journal_classes()(storage))
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1
    return optuna.load_study(study_name=names[0], storage=storage)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_refine_killed_at_a_random_moment_resumes_consistently(kind, tmp_path):
    from optuna.trial import TrialState

    storage = str(tmp_path / "s.journal") if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    progress = ((lambda: journal_lines(tmp_path / "s.journal")) if kind == "journal"
                else (lambda: sqlite_trials(tmp_path / "s.db")))
    at = RNG.randint(40, 120) if kind == "journal" else RNG.randint(3, 12)
    p = fleetopt("refine", str(AZ), "--trials", "5000", "--storage", storage, "--format", "json")
    wait_for(lambda: progress() >= at or p.poll() is not None, 120, "trials")
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    if kind == "journal":                           # whatever the moment, every complete record parses
        for line in (tmp_path / "s.journal").read_bytes().splitlines():
            json.loads(line)
    before = load_study(storage)
    n_before = len(before.trials)
    code, out, err = finish(fleetopt("refine", str(AZ), "--trials", "3", "--storage", storage, "--format", "json"))
    assert code == 0, err
    r = json.loads(out)
    assert r["trials"]["this_run"] == 3 and r["trials"]["count"] == n_before + 3
    after = load_study(storage)
    assert not [t for t in after.trials if t.state == TrialState.RUNNING]      # the killed one marked failed
    assert r["best"]["fleet"]["tokens_per_joule"] >= r["milp"]["tokens_per_joule"]


def test_refine_after_a_stale_lock_and_a_torn_record(tmp_path):
    """The issue's reproduction: a lock left behind (Optuna's symlink, dangling) and a last
    record cut short by a kill or a full disk (the default journal under the working folder)."""
    code, _, err = finish(fleetopt("refine", str(AZ), "--trials", "2", cwd=tmp_path))
    assert code == 0, err
    j = tmp_path / ".fleetopt" / "azure-conv-h100.optuna.journal"
    lock = Path(str(j) + ".lock")
    lock.symlink_to(".fleetopt/azure-conv-h100.optuna.journal")               # dangles, as a relative path did
    with open(j, "ab") as f:
        f.write(b'{"op_code": 4, "worker_id": "w", "trial_id": 1, "par')      # a torn append
    code, out, err = finish(fleetopt("refine", str(AZ), "--trials", "2", "--format", "json", cwd=tmp_path),
                            timeout=60)
    assert code == 0, err
    assert "removed a stale journal lock" in err and "dropped an incomplete last record" in err
    assert json.loads(out)["trials"]["count"] == 4
    assert j.read_bytes().endswith(b"\n") and not lock.is_symlink()
    # a symlink lock of a live writer of the old kind does not block fleetopt either (flock)
    lock.symlink_to(j)
    code, _, err = finish(fleetopt("refine", str(AZ), "--trials", "1", cwd=tmp_path), timeout=60)
    assert code == 0, err


def test_refine_with_other_overrides_starts_another_study(tmp_path):
    s = str(tmp_path / "s.journal")
    code, out, _ = finish(fleetopt("refine", str(AZ), "--trials", "3", "--storage", s, "--format", "json"))
    a = json.loads(out)
    code, out, err = finish(fleetopt("refine", str(AZ), "--set", "workload.arrival_rate=20", "--trials", "2",
                                     "--storage", s, "--format", "json"))
    b = json.loads(out)
    assert code == 0 and a["study"] != b["study"] and b["trials"]["count"] == 2
    assert b["best"]["fleet"]["tokens_per_joule"] >= b["milp"]["tokens_per_joule"]
    code, _, err = finish(fleetopt("refine", str(AZ), "--set", "workload.arrival_rate=20", "--trials", "2",
                                   "--storage", s, "--study", a["study"]))
    assert code == 2 and "holds another problem" in one_line(err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_refine_interrupted_ends_in_one_line_with_a_consistent_study(sig, tmp_path):
    from optuna.trial import TrialState

    s = str(tmp_path / "s.journal")
    p = fleetopt("refine", str(AZ), "--trials", "5000", "--storage", s)
    wait_for(lambda: journal_lines(tmp_path / "s.journal") >= RNG.randint(30, 90), 120, "trials")
    os.kill(p.pid, sig)
    code, _, err = finish(p, timeout=30)
    assert code == 130
    assert one_line(err).startswith("fleetopt: interrupted: study 'refine-azure-conv-h100")
    st = load_study(s)
    assert st.trials and not [t for t in st.trials if t.state == TrialState.RUNNING]


# ---- sweep -------------------------------------------------------------------------------

def grid_spec(d: Path, base: Path, rates: int = 40, name: str = "g") -> Path:
    p = d / f"{name}.yaml"
    rs = [10 * (i + 1) for i in range(rates)]
    p.write_text(f"schema_version: 1\nname: {name}\nbase: {base}\ngrid:\n  workload.arrival_rate: {rs}\n"
                 f"  slo.ttft_p99_ms: [800, 1200]\n")
    return p


def rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "cases")


def n_rows(out: Path) -> int:
    return len(list((out / "cases").glob("*.parquet"))) if (out / "cases").exists() else 0


def test_sweep_parent_killed_at_a_random_moment_takes_its_workers_with_it(tmp_path):
    spec, out = grid_spec(tmp_path, AZ), tmp_path / "out"
    p = fleetopt("sweep", str(spec), "--out", str(out), "--workers", "2", "--format", "json")
    at = RNG.randint(3, 30)
    wait_for(lambda: n_rows(out) >= at or p.poll() is not None, 120, "rows")
    os.kill(p.pid, signal.SIGKILL)                  # the parent only: the OS must not orphan the workers
    p.wait()
    wait_for(lambda: group_gone(p.pid), 10, "the workers to die with their parent")
    partial = n_rows(out)
    code, out_text, err = finish(fleetopt("sweep", str(spec), "--out", str(out), "--format", "json"))
    assert code == 0, err
    r = json.loads(out_text)
    assert r["skipped"] == partial and r["done"] == 80 - partial
    df = rows(out)
    assert len(df) == 80 and df["case_id"].is_unique
    assert not [q for q in (out / "cases").iterdir() if q.name.startswith(".")]    # no temporaries left


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sweep_interrupted_stops_at_once(sig, tmp_path):
    spec, out = grid_spec(tmp_path, AZ, rates=60), tmp_path / "out"
    p = fleetopt("sweep", str(spec), "--out", str(out), "--workers", "2")
    wait_for(lambda: n_rows(out) >= RNG.randint(2, 10) or p.poll() is not None, 120, "rows")
    os.kill(p.pid, sig)
    code, _, err = finish(p, timeout=30)
    assert code == 130
    assert "run the same command again to resume" in one_line(err)
    wait_for(lambda: group_gone(p.pid), 10, "the workers to stop")
    n = n_rows(out)
    assert n < 120
    time.sleep(0.5)
    assert n_rows(out) == n                         # nothing more is written after the exit
    code, _, err = finish(fleetopt("sweep", str(spec), "--out", str(out)))
    assert code == 0, err
    assert len(rows(out)) == 120


def test_editing_the_base_reruns_exactly_the_cases_it_changes(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(AZ.read_text())
    spec, out = grid_spec(tmp_path, base, rates=3), tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--format", "json"]) == 0
    first = rows(out).set_index("case_id")
    base.write_text(AZ.read_text().replace("ttft_p99_ms: 1000", "ttft_p99_ms: 700"))   # every case overrides it
    assert main(["sweep", str(spec), "--out", str(out), "--format", "json"]) == 0
    assert rows(out).set_index("case_id").index.equals(first.index)                  # nothing re-ran
    base.write_text(AZ.read_text().replace("tpot_p99_ms: 60", "tpot_p99_ms: 45"))    # every case sees this
    code = main(["sweep", str(spec), "--out", str(out), "--format", "json"])
    assert code == 0
    df = rows(out)
    assert len(df) == 6 and df["case_id"].is_unique and not set(df["case_id"]) & set(first.index)
    assert (df["tokens_per_joule"] != first["tokens_per_joule"].to_numpy()[0]).any()


def test_an_output_folder_belongs_to_one_spec(tmp_path, capsys):
    out = tmp_path / "out"
    a, b = grid_spec(tmp_path, AZ, 2, "a"), grid_spec(tmp_path, AZ, 3, "b")
    assert main(["sweep", str(a), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sweep", str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds the results of sweep 'a'" in one_line(err) and len(rows(out)) == 4
    assert main(["sweep", str(b), "--out", str(out), "--force", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["skipped"] == 4 and r["done"] == 2 and len(rows(out)) == 6      # same problems: rows kept


def test_a_finished_sweep_rewrites_nothing(tmp_path):
    spec, out = grid_spec(tmp_path, AZ, 2), tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    snap = {q: q.stat().st_mtime_ns for q in out.rglob("*")}
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    assert {q: q.stat().st_mtime_ns for q in out.rglob("*")} == snap


# ---- output sets -------------------------------------------------------------------------

def test_solve_out_replaces_the_set_as_a_whole(tmp_path, capsys, monkeypatch):
    from fleetopt import atomic as files

    out = tmp_path / "plan"
    assert main(["solve", str(AZ), "--out", str(out)]) == 0
    old = {q.name: q.read_bytes() for q in out.iterdir()}
    assert set(old) >= {"plan.json", "pools.csv", "plan.md", "plan.html", "power.png"}
    for q in out.iterdir():                         # new files get 0666 minus the umask (022 here)
        assert stat.S_IMODE(q.stat().st_mode) == 0o666 & ~files.current_umask()
    # a writer failing half-way (a kill, a full disk) leaves the whole old set and no temporary
    real = files.write_atomic
    calls = []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(files, "write_atomic", flaky)
    capsys.readouterr()
    assert main(["solve", str(AZ), "--out", str(out), "--force", "--set", "workload.arrival_rate=50"]) == 2
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert {q.name: q.read_bytes() for q in out.iterdir()} == old
    assert sorted(q.name for q in tmp_path.iterdir()) == ["plan"]
    monkeypatch.setattr(files, "write_atomic", real)
    # a temporary set a killed writer left is removed by the next write
    ghost = tmp_path / f".plan~{files._host()}~999999999~deadbeef"
    ghost.mkdir()
    assert main(["solve", str(AZ), "--out", str(out), "--force", "--set", "workload.arrival_rate=50"]) == 0
    assert not ghost.exists() and json.loads((out / "plan.json").read_text())["fleet"]["arrival_rate"] == 50


def test_files_honour_the_umask(tmp_path, capsys):
    old = os.umask(0o077)
    try:
        assert main(["simulate", str(AZ), "--topology", "16384:h100x8", "--requests", "500",
                     "--trace-out", str(tmp_path / "t.csv")]) == 0
        assert main(["solve", str(AZ), "--out", str(tmp_path / "p")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "p" / "plan.json").stat().st_mode) == 0o600


# ---- read-only and full disks (tmpfs) -----------------------------------------------------

@contextmanager
def tmpfs(path: Path, size: str = "8m"):
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs mounts are a Linux facility")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)],
                       check=False, capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip()}); needs root with CAP_SYS_ADMIN "
                    f"(chmod does not stop root from writing)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


def fill(path: Path, leave: int) -> None:
    """Fill a file system until about ``leave`` bytes are free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(path / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_read_only_folder(tmp_path, capsys):
    with tmpfs(tmp_path / "ro") as ro:
        spec = grid_spec(tmp_path, AZ, 2)
        assert main(["sweep", str(spec), "--out", str(ro / "sw")]) == 0
        assert main(["solve", str(AZ), "--out", str(ro / "plan")]) == 0
        remount(ro, "ro")
        snap = sorted(str(q) for q in ro.rglob("*"))
        capsys.readouterr()
        assert main(["sweep", str(spec), "--out", str(ro / "sw"), "--format", "json"]) == 0   # finished: resumes
        assert json.loads(capsys.readouterr().out)["skipped"] == 4
        for argv, needle in [
            (["solve", str(AZ), "--out", str(ro / "plan"), "--force"], "--out: cannot write"),
            (["solve", str(AZ), "--out", str(ro / "new")], "--out: cannot write"),
            (["simulate", str(AZ), "--topology", "16384:h100x8", "--requests", "500", "--trace-out",
              str(ro / "t.csv")], "--trace-out: cannot write"),
            (["sweep-report", str(ro / "sw")], "sweep-report: cannot write"),
            (["refine", str(AZ), "--trials", "2", "--storage", str(ro / "s.journal")], "--storage: cannot open"),
            (["sweep", str(grid_spec(tmp_path, AZ, 3)), "--out", str(ro / "sw")], "--out: cannot write"),
        ]:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert needle in one_line(err) and "Read-only file system" in err, err
        assert sorted(str(q) for q in ro.rglob("*")) == snap


def test_full_disk(tmp_path, capsys):
    with tmpfs(tmp_path / "full", "2m") as full:
        assert main(["solve", str(AZ), "--out", str(full / "plan")]) == 0
        old = {q.name: q.read_bytes() for q in (full / "plan").iterdir()}
        fill(full, 4096)
        capsys.readouterr()
        for argv, needle in [
            (["solve", str(AZ), "--out", str(full / "plan"), "--force", "--set", "workload.arrival_rate=50"],
             "--out: cannot write"),
            (["simulate", str(AZ), "--topology", "16384:h100x8", "--requests", "2000", "--trace-out",
              str(full / "t.csv")], "--trace-out: cannot write"),
        ]:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert needle in one_line(err) and "No space left on device" in err, err
        assert {q.name: q.read_bytes() for q in (full / "plan").iterdir()} == old        # the old set, whole
        assert sorted(q.name for q in full.iterdir()) == ["filler", "plan"]              # no temporaries
        # a journal that fills the disk: the failed append is rolled back, the study resumes
        (full / "filler").unlink()
        fill(full, 24 * 1024)
        j = full / "s.journal"
        assert main(["refine", str(AZ), "--trials", "500", "--storage", str(j)]) == 2
        err = capsys.readouterr().err
        assert "cannot write the study" in one_line(err) and "No space left on device" in err
        for line in j.read_bytes().splitlines():
            json.loads(line)
        assert j.read_bytes().endswith(b"\n")
        (full / "filler").unlink()
        assert main(["refine", str(AZ), "--trials", "2", "--storage", str(j), "--format", "json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["trials"]["this_run"] == 2
