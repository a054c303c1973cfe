"""``fleetopt solve``: the provably optimal plan of a problem.

    columns (``fleetopt.columns``)  ->  MILP stages (``milp``, ``dinkelbach``, ``bounds``)
        ->  plan (``fleetopt.evaluation``)  ->  baselines and gains (``baselines``)
        ->  ``fleetopt.plan.check_plan``

The plan is re-evaluated with the same code that sized its columns, so what is reported is
what ``fleetopt evaluate`` gives for the plan's topology.  Infeasible problems raise
``InfeasibleError`` with a diagnosis naming the binding constraint and by how much
(``diagnose``); a time limit that ends before any plan raises ``NoPlanInTimeError``.
``max_throughput`` bisects the demand (``throughput``); split prefill/decode pools are
``disagg``.  ``solver.variables`` and ``solver.constraints`` are the size of the optimum
stage's model, after elimination; ``solver.seconds`` counts from the call (the problem is
compiled before it).
"""

from __future__ import annotations

import time

from fleetopt import lazy
from fleetopt.columns import generate
from fleetopt.errors import FleetoptError
from fleetopt.plan import Plan
from fleetopt.problem import Problem
from fleetopt.solver.finish import finish
from fleetopt.solver.throughput import max_throughput

__all__ = ["finish", "solve"]

SPLIT_SOLVE = "fleetopt.solver.disagg:solve_disagg"
"""The solve over aggregated and split pools; loaded with ``pools.disaggregation`` on."""


def solve(problem: Problem, workers: int = 1, verbose: bool = False) -> Plan:
    """The plan of ``problem`` for its objective: pool boundaries, GPU type, TP and
    admission per pool, instance counts; baselines, gains and the solver's statistics.
    ``workers`` > 1 sizes the candidate pools on that many processes; ``verbose`` shows the
    HiGHS log."""
    t0 = time.perf_counter()
    if problem.pools.split_grid > 1 and problem.pools.compress is not None:
        raise FleetoptError("pools.split_grid: mixed pools and pools.compress cannot be combined (a compressed "
                            "range's columns assume one pool above it)")
    if problem.pools.disaggregation != "off":           # split prefill/decode pools
        return lazy.load(SPLIT_SOLVE)(problem, t0, verbose, workers)
    if problem.objective == "max_throughput":
        return max_throughput(problem, verbose, t0)
    return finish(problem, generate(problem, workers=workers), t0, verbose)
