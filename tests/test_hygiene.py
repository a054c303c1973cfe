"""Output hygiene: results alone on stdout (solver logs, progress and warnings on stderr),
progress only on a terminal and never with -q, Optuna metric names and prune reasons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fleetopt
from fleetopt.cli import main

REPO = Path(__file__).resolve().parents[1]
INST = REPO / "instances"
ENV = {"PYTHONPATH": str(REPO)}


def _env() -> dict:
    import os

    return {**os.environ, **ENV}


@pytest.mark.parametrize("interface", ["highspy", "pyomo"])
def test_verbose_json_pipes_into_json_tool(interface):
    """`fleetopt solve ... --verbose --format json | python -m json.tool` succeeds: the HiGHS
    log (written by C code to descriptor 1, or by Pyomo's tee) goes to stderr."""
    cmd = (f"{sys.executable} -m fleetopt solve {INST / 'azure-conv-h100.yaml'} --verbose --format json "
           f"--set solver.interface={interface} | {sys.executable} -m json.tool")
    p = subprocess.run(cmd, shell=True, check=False, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["solver"]["status"] == "optimal"
    assert "HiGHS" in p.stderr                    # the log was shown, on stderr


def _force_terminal(monkeypatch):
    """Progress as on a terminal, shown at once (the 2 s delay off)."""
    from fleetopt import console

    monkeypatch.setattr(console, "_isatty", lambda stream: True)
    monkeypatch.setattr(console, "DELAY_S", 0.0)


def test_simulate_progress_on_stderr_json_on_stdout(monkeypatch, capsys):
    _force_terminal(monkeypatch)
    args = ["simulate", str(INST / "azure-conv-h100.yaml"), "--topology", "16384:h100x8", "--requests", "70000",
            "--format", "json"]
    assert main(args) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["sim"]["requests"] > 0
    assert "simulating" in cap.err and "req" in cap.err
    assert main(["-q"] + args) == 0                # --quiet: no progress
    cap = capsys.readouterr()
    json.loads(cap.out)
    assert "simulating" not in cap.err


def test_no_progress_when_stderr_is_not_a_terminal(capsys):
    assert main(["simulate", str(INST / "azure-conv-h100.yaml"), "--topology", "16384:h100x8", "--requests", "70000",
                 "--format", "json"]) == 0
    assert capsys.readouterr().err == ""


def test_quiet_hides_warnings(capsys):
    """A FleetoptWarning is one line on stderr, and none with -q."""
    args = ["evaluate", str(INST / "azure-conv-h100.yaml"), "--topology", "2048:h100x8", "--format", "json"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.startswith("fleetopt: warning:") and err.count("\n") == 1
    assert main(["--quiet"] + args) == 0
    assert capsys.readouterr().err == ""


def test_optuna_metric_names_and_prune_reasons(tmp_path):
    import optuna

    from fleetopt.problem import Problem
    from fleetopt.refinement import refine
    from fleetopt.refinement.study import PRUNE_ATTR

    inst = fleetopt.load_instance(INST / "datacenter-20mw.yaml", ["workload.arrival_rate=400",
                                                                  "power.facility_cap_mw=0.1936"])
    store = tmp_path / "s.journal"
    r = refine(Problem.from_instance(inst), trials=25, storage=str(store), seed=0)
    st = optuna.load_study(study_name=r["study"], storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(store))))
    assert st.metric_names == ["tokens_per_joule"] == r["metric_names"]
    pruned = [t for t in st.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.user_attrs.get(PRUNE_ATTR) for t in pruned)
    assert any("power cap" in t.user_attrs[PRUNE_ATTR] for t in pruned)
    hist = {h["trial"]: h for h in r["history"]}
    assert len(hist) == 25 and all(hist[t.number]["pruned_because"] == t.user_attrs[PRUNE_ATTR] for t in pruned)


def test_pareto_metric_names(tmp_path):
    from fleetopt.problem import Problem
    from fleetopt.refinement import refine

    r = refine(Problem.from_instance(fleetopt.load_instance(INST / "azure-conv-h100.yaml")), trials=3,
               storage=str(tmp_path / "s.journal"), seed=0, pareto="ttft")
    assert r["metric_names"] == ["tokens_per_joule", "ttft_p99_ms"]


def test_solve_shows_its_elapsed_time_on_a_terminal(monkeypatch, capsys):
    """A solve has no count to show: an elapsed-time line on stderr (from 2 s on; at once
    here), nothing on stdout but the JSON."""
    _force_terminal(monkeypatch)
    from fleetopt import console

    shown = []
    real = console.activity

    def spy(desc):
        shown.append(desc)
        return real(desc)

    monkeypatch.setattr(console, "activity", spy)
    assert main(["solve", str(INST / "heterogeneous.yaml"), "--format", "json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["solver"]["status"] == "optimal"
    assert shown == ["solving"]


def test_activity_line_on_stderr(monkeypatch, capsys):
    import time

    from fleetopt import console

    _force_terminal(monkeypatch)
    console.configure()
    seen = ""
    with console.activity("solving"):
        for _ in range(200):                    # until the helper thread has drawn its line
            seen += capsys.readouterr().err
            if "solving" in seen:
                break
            time.sleep(0.05)
    assert "solving" in seen and capsys.readouterr().out == ""
    console.configure(progress=False)
