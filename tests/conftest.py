"""Shared fixtures.  Tests that read ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def need_shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the shared data folder beside the repo is absent)")
    return p


@pytest.fixture(scope="session")
def cat():
    from fleetopt.catalog import load_catalog

    return load_catalog()


@pytest.fixture(autouse=True)
def _packaged_calibration():
    """Every test starts and ends on the packaged calibration (``--calibration`` in a CLI
    test or an instance's ``calibration`` field changes the process-wide one)."""
    from fleetopt.physics.calibration import DEFAULT, use_calibration

    use_calibration(DEFAULT, "packaged", "packaged")
    yield
    use_calibration(DEFAULT, "packaged", "packaged")


def published():
    """The paper's published tables (``benchmarks/published_tables.yaml``)."""
    import yaml

    return yaml.safe_load((REPO / "benchmarks" / "published_tables.yaml").read_text())


def workload_of(inst):
    """(length distribution, arrival rate) of an instance, as its problem compiles them."""
    from fleetopt.problem import Problem

    p = Problem.from_instance(inst)
    return p.dist, p.rate


def pytest_sessionfinish(session, exitstatus):
    """The tests test this checkout: every fleetopt module they imported lives in it (an
    editable install of another checkout must not stand in for a module missing here)."""
    import sys

    stray = sorted(name for name, m in sys.modules.items()
                   if name.split(".")[0] in ("fleetopt", "formulations") and getattr(m, "__file__", None)
                   and not Path(m.__file__).resolve().is_relative_to(REPO))
    if stray:
        raise RuntimeError(f"modules imported from outside {REPO}: {', '.join(stray)}")


@pytest.fixture(autouse=True)
def _no_progress():
    """Every test ends with progress off (a CLI test on a forced terminal turns it on)."""
    yield
    from fleetopt import console

    console.configure(progress=False)
