"""``objective: max_throughput``: the largest demand the power cap can serve, by bisection
on the demand scale, each step the least-energy MILP at s x the arrival rate.
"""

from __future__ import annotations

from typing import Any

from fleetopt.columns import Columns, generate, prune_dominated
from fleetopt.errors import FleetoptError, InfeasibleError, NoPlanInTimeError
from fleetopt.plan import Plan
from fleetopt.problem import Problem
from fleetopt.solver.diagnose import diagnose, no_plan_in_time
from fleetopt.solver.finish import finish
from fleetopt.solver.milp import StagedSolve


def max_throughput(problem: Problem, verbose: bool, t0: float) -> Plan:
    """Largest demand scale s (to 0.1 %) for which a plan fits the power cap, by bisection
    (doubling up from 1, or halving down, then halving the bracket [lo, hi] until
    (hi - lo) / lo <= 1e-3); the plan at that scale minimises energy."""
    if problem.power.cap_w is None:
        raise FleetoptError("objective: max_throughput needs power.facility_cap_mw")
    energy = problem.with_objective("max_tokens_per_joule")
    rate = problem.rate
    shapes: dict[Any, Any] = {}         # routed traffic and pool shapes do not depend on the demand

    def feasible(s: float) -> tuple[Columns | None, Columns]:
        """(the columns at scale s when a plan exists there, else None; the columns)."""
        raw = generate(energy, rate * s, cache=shapes)
        cols = prune_dominated(raw, "max_tokens_per_joule", True)
        if not len(cols):
            return None, raw
        res, _ = StagedSolve(energy, cols, False).run()
        if not res.chosen and res.status == "time_limit":       # undecided: not a proof of infeasibility
            raise NoPlanInTimeError(no_plan_in_time(energy) + f" (demand scale {s:.4g} of the bisection)")
        return (raw if res.chosen else None), raw

    lo, hi = 0.0, 1.0
    ok, raw = feasible(1.0)
    if ok is not None:
        lo = 1.0
        while True:
            hi = lo * 2
            ok2, _ = feasible(hi)
            if ok2 is None:
                break
            lo = hi
    else:
        while ok is None and hi > 1e-6:
            hi /= 2
            ok, raw = feasible(hi)
        if ok is None:
            raise InfeasibleError(diagnose(energy, raw))
        lo, hi = hi, hi * 2
    steps = 0
    while (hi - lo) / lo > 1e-3:
        mid = 0.5 * (lo + hi)
        steps += 1
        if feasible(mid)[0] is not None:
            lo = mid
        else:
            hi = mid
    at_lo, _ = feasible(lo)
    assert at_lo is not None, "the bisection's lower end is feasible"
    plan = finish(energy.with_rate(rate * lo), at_lo, t0, verbose)
    return plan.replace(objective="max_throughput",
                        throughput={"demand_scale": lo, "arrival_rate": rate * lo, "upper_bound_scale": hi,
                                    "relative_gap": (hi - lo) / lo, "bisection_steps": steps})
