"""Formulations of the fleet MILP, registered by name, each module stating its mathematics:

* ``fleet``: the path model over pools of one config each (``add_flow``, ``add_pools``,
  ``add_stock``, ``add_power``, ``add_budget``);
* ``fleet_mixed``: mixed pools (``pools.split_grid`` > 1), fleet's families on arc
  variables plus ``add_split``;
* ``fleet_disagg``: split prefill/decode pools as a per-range choice.

A formulation gives ``constraint_rows(data)``, ``variables(data)``, ``start_values(data,
chosen)`` and ``build(data, weights, sense)`` (the Pyomo model); ``formulations.highs``
carries the rows to HiGHS.  Formulations know nothing of instances or YAML.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY = {"fleet": "formulations.fleet", "fleet_mixed": "formulations.fleet_mixed",
            "fleet_disagg": "formulations.fleet_disagg"}


def get(name: str) -> ModuleType:
    """The formulation module registered as ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown formulation '{name}'; known: {', '.join(sorted(REGISTRY))}")
    return importlib.import_module(REGISTRY[name])
