"""The Python API (``fleetopt.load_instance/solve/evaluate/simulate/refine/sweep``), the
Plan it returns, ``check_plan``, and the shipped JSON Schema of the instance format."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import fleetopt
from fleetopt.instance import json_schema
from fleetopt.plan import check_plan, plan_violations
from fleetopt.problem import Problem

REPO = Path(__file__).resolve().parents[1]
INST = REPO / "instances"
HETERO = INST / "heterogeneous.yaml"
NEGATIVE = "workload.arrival_rate: must be > 0, got -5"
"""The command line's line for --set workload.arrival_rate=-5 (tests/test_instance.py)."""


@pytest.fixture(scope="module")
def hetero_plan() -> fleetopt.Plan:
    return fleetopt.solve(fleetopt.load_instance(HETERO))


def test_solve_returns_a_plan_with_a_dataframe_of_pools(hetero_plan):
    p = hetero_plan
    assert isinstance(p, fleetopt.Plan) and p.kind == "solve"
    assert isinstance(p.pools, pd.DataFrame) and len(p.pools) == len(p.pool_rows) >= 1
    assert list(p.pools["gpu"]) == [r["gpu"] for r in p.pool_rows]
    assert p.solver["status"] == "optimal" and p.solver["nodes"] is not None
    d = p.to_dict()
    assert {"instance", "topology", "pools", "fleet", "baselines", "gains", "solver", "inputs"} <= set(d)
    assert list(d)[-1] == "inputs"
    ins = d["inputs"]
    assert ins["fleetopt_version"] == fleetopt.__version__ and ins["calibration"]["label"] == "packaged"
    assert ins["slo"]["ttft_p99_ms"] == 1500 and ins["power"]["provisioning_basis"] == "peak"
    assert ins["instance_file"].endswith("heterogeneous.yaml") and ins["overrides"] == []
    assert json.loads(p.to_json())["topology"] == p.spec
    assert "| pool |" in p.to_markdown()
    row = p.summary_row()
    assert row["status"] == "optimal" and row["topology"] == p.spec and row["gpus"] == p.fleet["gpus"]


def test_the_printed_example_of_the_issue():
    code = ("import fleetopt; p = fleetopt.solve(fleetopt.load_instance('instances/heterogeneous.yaml')); "
            "print(type(p.pools).__name__); print(p.pools)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.startswith("DataFrame\n") and "lo_tokens" in out and "rows x" in out


def test_a_dict_instance_solves_like_its_file(hetero_plan):
    data = yaml.safe_load(HETERO.read_text())
    p = fleetopt.solve(fleetopt.load_instance(data))
    assert p.spec == hetero_plan.spec and p.fleet == pytest.approx(hetero_plan.fleet)
    assert p.inputs["instance_file"] is None


def test_overrides_as_a_mapping_or_as_set_lines():
    a = fleetopt.load_instance(HETERO, {"workload.arrival_rate": 300, "slo.tpot_p99_ms": 80})
    b = fleetopt.load_instance(HETERO, ["workload.arrival_rate=300", "slo.tpot_p99_ms=80"])
    assert a.workload.arrival_rate == b.workload.arrival_rate == 300 and a.slo.tpot_p99_ms == 80
    assert fleetopt.solve(a).inputs["overrides"] == ["workload.arrival_rate=300", "slo.tpot_p99_ms=80"]


def test_a_negative_arrival_rate_is_refused_with_the_command_lines_line():
    with pytest.raises(fleetopt.FleetoptError) as e:
        fleetopt.load_instance(HETERO, {"workload.arrival_rate": -5})
    assert str(e.value).endswith(NEGATIVE) and "\n" not in str(e.value)
    inst = fleetopt.load_instance(HETERO)
    inst.workload.arrival_rate = -5                 # edited after loading: validated again before use
    for call in (lambda: fleetopt.solve(inst), lambda: fleetopt.evaluate(inst, "65536:h100x8")):
        with pytest.raises(fleetopt.FleetoptError) as e:
            call()
        assert str(e.value).endswith(NEGATIVE)
    p = subprocess.run([sys.executable, "-m", "fleetopt", "solve", str(HETERO), "--set", "workload.arrival_rate=-5"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().endswith(NEGATIVE)


def test_an_edited_instance_is_compiled_as_it_is_now():
    inst = fleetopt.load_instance(INST / "azure-conv-h100.yaml")
    before = fleetopt.solve(inst)
    inst.workload.arrival_rate = 2 * before.fleet["arrival_rate"]
    after = fleetopt.solve(inst)
    assert after.fleet["arrival_rate"] == pytest.approx(2 * before.fleet["arrival_rate"])
    assert after.fleet["instances"] > before.fleet["instances"]


def test_evaluate_takes_text_choices_or_a_plan(hetero_plan):
    inst = fleetopt.load_instance(HETERO)
    by_plan = fleetopt.evaluate(inst, hetero_plan)
    by_text = fleetopt.evaluate(inst, hetero_plan.spec)
    assert by_plan.kind == "evaluate" and by_plan.fleet == pytest.approx(by_text.fleet)
    assert by_plan.fleet["it_power_kw"] == pytest.approx(hetero_plan.fleet["it_power_kw"], rel=1e-12)


def test_simulate_gives_a_dataframe_with_the_fleet_in_attrs(hetero_plan):
    df = fleetopt.simulate(fleetopt.load_instance(HETERO), hetero_plan, requests=3000, seed=1)
    assert isinstance(df, pd.DataFrame) and len(df) == len(hetero_plan.pool_rows)
    assert df.attrs["sim"]["requests"] >= 3000 and df.attrs["fleet"]["tokens_per_joule"] > 0


def test_plan_write_and_the_cli_read_it_back(hetero_plan, tmp_path):
    files = hetero_plan.write(tmp_path / "out")
    names = {f.name for f in files}
    assert {"plan.json", "pools.csv", "plan.md", "plan.html"} <= names
    data = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert data["topology"] == hetero_plan.spec and data["inputs"]["workload"]["routed_lengths"]["requests"]
    with pytest.raises(fleetopt.FleetoptError):
        hetero_plan.write(tmp_path / "out")         # an earlier report is replaced only with force
    hetero_plan.write(tmp_path / "out", force=True)


def test_check_plan_recomputes_every_constraint(hetero_plan):
    problem = Problem.from_instance(fleetopt.load_instance(HETERO))
    check_plan(problem, hetero_plan)                # holds (every solve runs it too)
    s0 = hetero_plan.sized[0]
    short = dataclasses.replace(s0, instances=0)
    broken = hetero_plan.replace(sized=(short, *hetero_plan.sized[1:]))
    bad = plan_violations(problem, broken)
    assert any("instances for" in b for b in bad) and any(b.startswith("totals:") for b in bad)
    with pytest.raises(fleetopt.PlanCheckError):
        check_plan(problem, broken)
    tight = Problem.from_instance(fleetopt.load_instance(HETERO, {"slo.ttft_p99_ms": 1.0}))
    assert any("P99 TTFT" in b for b in plan_violations(tight, hetero_plan))
    k1 = Problem.from_instance(fleetopt.load_instance(HETERO, {"pools.max_pools": 1}))
    if len(hetero_plan.pool_rows) > 1:
        assert any(b.startswith("pools:") for b in plan_violations(k1, hetero_plan))
    capped = Problem.from_instance(fleetopt.load_instance(HETERO, {"power.facility_cap_mw": 0.01}))
    assert any(b.startswith("power:") for b in plan_violations(capped, hetero_plan))
    g = hetero_plan.pool_rows[0]["gpu"]
    idx = next(i for i, o in enumerate(problem.instance.gpus) if problem.catalog.gpu(o.id).id == g)
    stocked = Problem.from_instance(fleetopt.load_instance(HETERO, {f"gpus.{idx}.max_gpus": 1}))
    assert any(b.startswith("stock:") for b in plan_violations(stocked, hetero_plan))


def test_solve_reads_an_instance_from_stdin():
    args = [sys.executable, "-m", "fleetopt", "solve", "-", "--format", "json"]
    piped = subprocess.run(args, input=HETERO.read_text(), capture_output=True, text=True, cwd=REPO, check=True)
    from_file = subprocess.run(args[:4] + [str(HETERO), "--format", "json"], capture_output=True, text=True,
                               check=True)
    assert json.loads(piped.stdout)["topology"] == json.loads(from_file.stdout)["topology"]


def test_the_shipped_json_schema_is_current_and_accepts_every_instance():
    shipped = json.loads((REPO / "fleetopt" / "instance.schema.json").read_text())
    assert shipped == json_schema(), "regenerate: python -c \"import json; from fleetopt.instance import " \
                                     "json_schema; print(json.dumps(json_schema(), indent=2, sort_keys=True))\""
    jsonschema = pytest.importorskip("jsonschema")
    for f in sorted(INST.glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(f.read_text()), shipped)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"model": "x", "gpus": [], "workload": {}}, shipped)
