"""The ``solver`` section of a solved plan."""

from __future__ import annotations

import time

from fleetopt.problem import Problem
from formulations.highs import SolveResult


def solver_name(problem: Problem, formulation: str = "") -> str:
    """How the MILP reached HiGHS (``solver.interface``), and the formulation when not the default."""
    via = ("HiGHS via pyomo.contrib.solver.solvers.highs.Highs" if problem.solver.interface == "pyomo"
           else "HiGHS via highspy (the model's rows as a matrix)")
    return via + (f", formulation {formulation}" if formulation else "")


def solver_stats(problem: Problem, res: SolveResult, t0: float, t_cols: float, dinkelbach: int = 0,
                 formulation: str = "") -> dict[str, object]:
    """The ``solver`` section of a solved plan: status, objective, bound, gap, times, size,
    Dinkelbach iterations, notes, branch-and-bound nodes and the root node's dual bound."""
    return {"name": solver_name(problem, formulation), "status": res.status, "objective": res.objective,
            "bound": res.bound, "gap": res.gap, "seconds": time.perf_counter() - t0, "solve_seconds": res.seconds,
            "column_seconds": t_cols, "variables": res.variables, "constraints": res.constraints,
            "dinkelbach_iterations": dinkelbach, "notes": res.notes, "nodes": res.nodes,
            "root_bound": res.root_bound}
