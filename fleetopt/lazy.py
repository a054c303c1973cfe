"""Named objects imported when first used: ``load("fleetopt.disagg:size_split_choice")``.

The registries that name them (commands in ``fleetopt.cli.app``, modes in
``fleetopt.profiles``, formulations in ``formulations``) and the optional features that use
them (split prefill/decode pools, the paper's routing, the simulator behind ``solve
--verify``) keep what a process imports to what it runs: ``fleetopt solve`` on an
aggregated physical instance does not load the split-pool sizing, the published model or
the simulator (its start-up budget, README "Solving").  Every target is written out as a
``module:attribute`` string at the top of the module that uses it; a target that does not
import is an error where it is used, never a silently missing feature, and
``tests/test_habits.py`` imports every target and counts them as imports when it checks
that the package has no import cycle.
"""

from __future__ import annotations

import importlib
from typing import Any


def load(target: str) -> Any:
    """The attribute ``attr`` of module ``module`` named by ``"module:attr"``."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
