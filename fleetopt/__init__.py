"""fleetopt: plan LLM serving fleets (context-length pools, GPU types, counts) for tokens per joule.

The Python API (README, section "Python")::

    import fleetopt
    inst = fleetopt.load_instance("instances/heterogeneous.yaml", {"workload.arrival_rate": 300})
    plan = fleetopt.solve(inst)             # a Plan: plan.pools is a pandas DataFrame
    plan.fleet["tokens_per_joule"], plan.solver["status"]

``load_instance``, ``solve``, ``evaluate``, ``simulate``, ``refine``, ``sweep``, ``Plan``,
``Problem`` and ``check_plan`` are loaded on first use, so ``import fleetopt`` stays light
(the command line's start-up budget); the errors and the version are here at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fleetopt.errors import (
    FleetoptError,
    FleetoptWarning,
    InfeasibleError,
    Interrupted,
    NoPlanInTimeError,
    PlanCheckError,
)
from fleetopt.version import __version__

if TYPE_CHECKING:
    from fleetopt.api import evaluate as evaluate
    from fleetopt.api import load_instance as load_instance
    from fleetopt.api import refine as refine
    from fleetopt.api import simulate as simulate
    from fleetopt.api import solve as solve
    from fleetopt.api import sweep as sweep
    from fleetopt.plan import Plan as Plan
    from fleetopt.plan import check_plan as check_plan
    from fleetopt.problem import Problem as Problem

_LAZY = {"load_instance": "fleetopt.api", "solve": "fleetopt.api", "evaluate": "fleetopt.api",
         "simulate": "fleetopt.api", "refine": "fleetopt.api", "sweep": "fleetopt.api",
         "Plan": "fleetopt.plan", "check_plan": "fleetopt.plan", "Problem": "fleetopt.problem"}

__all__ = ["FleetoptError", "FleetoptWarning", "InfeasibleError", "Interrupted", "NoPlanInTimeError",
           "PlanCheckError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """The API's functions and classes, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetopt' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, lazy ones included."""
    return sorted(__all__)
