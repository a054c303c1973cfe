"""From sized columns to a checked plan: prune, the MILP stages, the plan evaluated, its
baselines and gains, the solver's statistics, ``check_plan``."""

from __future__ import annotations

import time

from fleetopt import lazy
from fleetopt.columns import Columns, prune_dominated
from fleetopt.errors import InfeasibleError, NoPlanInTimeError
from fleetopt.evaluation import evaluate
from fleetopt.plan import Plan, check_plan
from fleetopt.problem import Problem
from fleetopt.solver.baselines import baseline, chosen_topology, column_reader, gains
from fleetopt.solver.diagnose import diagnose, no_plan_in_time
from fleetopt.solver.milp import StagedSolve
from fleetopt.solver.stats import solver_stats

SPLIT_FINISH = "fleetopt.solver.disagg:finish_disagg"
"""``finish`` over aggregated and split pools; loaded with ``pools.disaggregation`` on."""


def finish(problem: Problem, raw: Columns, t0: float, verbose: bool = False) -> Plan:
    """Prune, solve and report, from already sized columns (``fleetopt sweep`` reuses
    them); the plan is checked (``check_plan``) before it is returned."""
    if problem.pools.disaggregation != "off":
        plan: Plan = lazy.load(SPLIT_FINISH)(problem, raw, t0, verbose)
        return plan
    capped = problem.power.cap_w is not None
    cols = prune_dominated(raw, problem.objective, capped)
    t_cols = time.perf_counter() - t0
    if not len(cols):
        raise InfeasibleError(diagnose(problem, raw))
    res, dinkelbach = StagedSolve(problem, cols, verbose).run()
    if not res.chosen:
        if res.status == "time_limit":
            raise NoPlanInTimeError(no_plan_in_time(problem))
        raise InfeasibleError(diagnose(problem, raw))
    topo = chosen_topology(cols, res.chosen, merge_empty=problem.pools.compress is None)
    plan = evaluate(problem, topo, sized=column_reader(problem, raw))
    m = len(raw.bounds)
    homog = baseline(problem, raw, [m])
    pb = problem.pools.paper_boundary
    two = baseline(problem, raw, [raw.bounds.index(pb) + 1, m]) if pb is not None and pb in raw.bounds[:-1] else None
    out = plan.replace(
        kind="solve", objective=problem.objective,
        baselines={"homogeneous": homog, "two_pool_paper": two},
        gains={"vs_homogeneous": gains(plan, homog), "vs_two_pool_paper": gains(plan, two)},
        solver=solver_stats(problem, res, t0, t_cols, dinkelbach),
        search_space={"boundaries": raw.bounds, "configs": [f"{c.gpu}x{c.tp}:{c.admission}" for c in raw.configs],
                      "max_pools": problem.pools.max_pools, "columns": len(raw), "columns_after_pruning": len(cols),
                      "infeasible_columns": len([k for k in raw.errors if not isinstance(k, int)])})
    check_plan(problem, out, raw.bounds[-1])
    return out
