"""Formulations of the fleet MILP, registered by name: ``get("fleet")`` is the path model
over aggregated pools (with its mixed-pool variant), ``get("fleet_disagg")`` adds split
prefill/decode pools as a per-range choice.  Each module states its mathematics."""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY = {"fleet": "formulations.fleet", "fleet_disagg": "formulations.fleet_disagg"}


def get(name: str) -> ModuleType:
    """The formulation module registered as ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown formulation '{name}'; known: {', '.join(sorted(REGISTRY))}")
    return importlib.import_module(REGISTRY[name])
