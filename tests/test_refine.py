"""Optuna refinement: never worse than the MILP seed, resumable, seeded, prunes infeasible trials."""

import json
from pathlib import Path

import pytest

from fleetopt import load_instance
from fleetopt.cli import main
from fleetopt.problem import Problem
from fleetopt.refinement import refine

INST = Path(__file__).resolve().parents[1] / "instances"


@pytest.mark.parametrize("name", ["paper-azure-h100", "azure-conv-h100"])
def test_never_worse_than_the_milp_seed(name, tmp_path):
    inst = load_instance(INST / f"{name}.yaml")
    r = refine(Problem.from_instance(inst), trials=15, storage=str(tmp_path / "s.journal"), seed=0)
    assert r["improvement"] >= 0
    assert r["best"]["fleet"]["tokens_per_joule"] >= r["milp"]["tokens_per_joule"]
    # the refined plan is a real plan: re-evaluating its topology with its knobs agrees
    assert r["trials"]["count"] == 15 and r["trials"]["completed"] + r["trials"]["pruned"] == 15


def test_seed_trial_reproduces_the_milp_figures(tmp_path):
    import optuna

    inst = load_instance(INST / "azure-conv-h100.yaml")
    r = refine(Problem.from_instance(inst), trials=1, storage=str(tmp_path / "s.journal"), seed=0)
    assert r["best"]["trial"] == 0
    assert r["best"]["fleet"]["tokens_per_joule"] == pytest.approx(r["milp"]["tokens_per_joule"], rel=1e-12)
    st = optuna.load_study(study_name=r["study"], storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal"))))
    assert st.trials[0].value == pytest.approx(r["milp"]["tokens_per_joule"], rel=1e-12)


def test_resume_adds_trials_to_the_same_study(tmp_path):
    inst = load_instance(INST / "paper-azure-h100.yaml")
    s = str(tmp_path / "s.journal")
    a = refine(Problem.from_instance(inst), trials=6, storage=s, seed=0)
    b = refine(Problem.from_instance(inst), trials=4, storage=s, seed=0)
    assert a["trials"]["count"] == 6 and b["trials"]["count"] == 10 and b["trials"]["this_run"] == 4
    assert b["best"]["fleet"]["tokens_per_joule"] >= a["best"]["fleet"]["tokens_per_joule"]


def test_sqlite_storage_works(tmp_path):
    inst = load_instance(INST / "paper-azure-h100.yaml")
    r = refine(Problem.from_instance(inst), trials=3, storage=f"sqlite:///{tmp_path / 'o.db'}", seed=0)
    assert r["trials"]["count"] == 3 and (tmp_path / "o.db").exists()


def test_seeded_determinism_single_worker(tmp_path):
    inst = load_instance(INST / "azure-conv-h100.yaml")
    a = refine(Problem.from_instance(inst), trials=12, storage=str(tmp_path / "a.journal"), seed=3)
    b = refine(Problem.from_instance(inst), trials=12, storage=str(tmp_path / "b.journal"), seed=3)
    assert a["best"]["knobs"] == b["best"]["knobs"]
    assert a["best"]["fleet"]["tokens_per_joule"] == b["best"]["fleet"]["tokens_per_joule"]


def test_infeasible_trials_are_pruned_not_crashes(tmp_path):
    """A power cap 5 % above the MILP plan's peak power: trials that need more are pruned."""
    inst = load_instance(INST / "datacenter-20mw.yaml", ["workload.arrival_rate=400",
                                                               "power.facility_cap_mw=0.1936"])
    r = refine(Problem.from_instance(inst), trials=25, storage=str(tmp_path / "s.journal"), seed=0)
    assert r["trials"]["pruned"] > 0
    assert r["best"]["fleet"]["peak_it_power_kw"] * 1.3 <= 193.6 + 1e-6


def test_pareto_front_is_non_dominated(tmp_path):
    inst = load_instance(INST / "azure-conv-h100.yaml")
    r = refine(Problem.from_instance(inst), trials=20, storage=str(tmp_path / "s.journal"), seed=0, pareto="ttft")
    front = r["pareto"]
    assert front
    for p in front:
        assert not any(q["tokens_per_joule"] >= p["tokens_per_joule"] and q["ttft_p99_ms"] <= p["ttft_p99_ms"]
                       and (q["tokens_per_joule"], q["ttft_p99_ms"]) != (p["tokens_per_joule"], p["ttft_p99_ms"])
                       for q in front)


def test_refine_cli_json(tmp_path, capsys):
    code = main(["refine", str(INST / "paper-azure-h100.yaml"), "--trials", "5", "--seed", "0",
                 "--storage", str(tmp_path / "s.journal"), "--format", "json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= {"milp", "best", "improvement", "trials"}
    assert r["best"]["fleet"]["tokens_per_joule"] >= r["milp"]["tokens_per_joule"]
    assert main(["refine", str(INST / "paper-azure-h100.yaml"), "--pareto", "latency"]) == 2


def test_refined_plan_verified_by_simulation(tmp_path):
    inst = load_instance(INST / "azure-conv-h100.yaml")
    r = refine(Problem.from_instance(inst), trials=10, storage=str(tmp_path / "s.journal"), seed=0, verify=True, verify_requests=20_000)
    v = r["verification"]
    assert not v["slo_missed"] and abs(v["deviation"]["tokens_per_joule"]) < 0.10


def test_bad_storage_is_one_line(tmp_path, capsys):
    for bad in (str(tmp_path), f"sqlite:///{tmp_path}/missing/dir/o.db"):
        assert main(["refine", str(INST / "paper-azure-h100.yaml"), "--trials", "2", "--storage", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("fleetopt: error: --storage:") and "\n" not in err
