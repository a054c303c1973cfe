"""Instance schema: every field kind answers with its path; --set overrides."""

import subprocess
import sys
from pathlib import Path

import pytest

from fleetopt import FleetoptError, load_instance
from fleetopt.loading import apply_set, load_instance_data, validate_instance

INSTANCES = Path(__file__).resolve().parents[1] / "instances"


def base():
    return load_instance_data(INSTANCES / "paper-azure-h100.yaml")


@pytest.mark.parametrize("path,value,needle", [
    ("workload.arrival_rate", -5, "workload.arrival_rate: must be > 0, got -5"),
    ("slo.ttft_p99_ms", 0, "slo.ttft_p99_ms: must be > 0"),
    ("slo.max_utilization", 1.5, "slo.max_utilization: must be <= 1"),
    ("power.pue", 0.9, "power.pue: must be >= 1"),
    ("power.provisioning", "max", "power.provisioning: must be one of"),
    ("objective", "fastest", "objective: must be one of"),
    ("mode", "exact", "mode: must be one of"),
    ("pools.max_pools", "two", "pools.max_pools: must be an integer"),
    ("pools.colour", "red", "pools.colour: is not a known field"),
    ("gpus", [], "gpus: must have at least 1"),
    ("workload.distribution.input_share", 1.2, "workload.distribution.input_share: must be < 1"),
    ("schema_version", 7, "schema_version: this fleetopt reads schema_version 1"),
    ("workload.distribution.type", "zipf", "workload.distribution.type: must be one of 'cdf', 'histogram'"),
    ("pools.boundaries", "some", "pools.boundaries: must be one of 'auto' or a list, got 'some'"),
    ("gpus.0.tp", "[0]", "gpus.0.tp.0: must be >= 1, got 0"),
    ("pools.split_grid", 9, "pools.split_grid: must be <= 8, got 9"),
])
def test_schema_errors_name_the_field(path, value, needle):
    d = base()
    apply_set(d, f"{path}={value}")
    with pytest.raises(FleetoptError) as e:
        validate_instance(d)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_errors_inside_a_mapping_name_its_key():
    """msgspec writes a mapping's key as [...]; the message names the key."""
    d = load_instance_data(INSTANCES / "heterogeneous.yaml")
    apply_set(d, "workload.distribution.components.conversation.weight=-1")
    with pytest.raises(FleetoptError) as e:
        validate_instance(d)
    assert str(e.value) == "workload.distribution.components.conversation.weight: must be >= 0, got -1"


def test_missing_model():
    d = base()
    del d["model"]
    with pytest.raises(FleetoptError, match="model: is required"):
        validate_instance(d)


def test_set_overrides_types():
    inst = load_instance(INSTANCES / "paper-azure-h100.yaml",
                            ["workload.arrival_rate=500", "gpus.0.tp=[4, 8]", "power.facility_cap_mw=20"])
    assert inst.workload.arrival_rate == 500
    assert inst.gpus[0].tp == [4, 8]
    assert inst.power.facility_cap_mw == 20


def test_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("model: [unclosed\n")
    with pytest.raises(FleetoptError, match="not valid YAML"):
        load_instance(f)
    with pytest.raises(FleetoptError, match="no such instance file"):
        load_instance(tmp_path / "none.yaml")


def test_yaml_is_read_safely(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(FleetoptError):
        load_instance(f)


@pytest.mark.parametrize("name", sorted(p.name for p in INSTANCES.glob("*.yaml")))
def test_every_shipped_instance_validates(name):
    inst = load_instance(INSTANCES / name)
    assert inst.model and inst.gpus


def test_cli_bad_override_exit_2():
    p = subprocess.run([sys.executable, "-m", "fleetopt", "evaluate", str(INSTANCES / "paper-azure-h100.yaml"),
                        "--topology", "65536:h100x8", "--set", "workload.arrival_rate=-5"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().endswith("workload.arrival_rate: must be > 0, got -5")
    assert len(p.stderr.strip().splitlines()) == 1
