"""Why no plan exists: the binding constraint and by how much, in one line.

Read on the pools of one config each (mixing configs only adds power or GPUs to a range),
with the path lower bounds of ``fleetopt.solver.bounds``: no pool meets the SLOs, no path of
at most K pools covers the range, the power cap short by a shortfall in W/kW/MW, or the
GPU inventories too small.
"""

from __future__ import annotations

import math

import numpy as np

from fleetopt.columns import Columns
from fleetopt.problem import FacilityPower, Problem
from fleetopt.render import power_text, power_unit
from fleetopt.solver.bounds import best_path


def power_shortfall(need_w: float, cap_w: float, power: FacilityPower) -> str:
    """The power-cap diagnosis: the shortfall need - cap in W, kW or MW (4 significant
    digits) and relative to the cap; need and cap in the cap's unit with enough decimals
    that their difference shows (at least 2 significant digits of it) when they share
    that unit, each in its own unit otherwise."""
    short = need_w - cap_w
    unit = power_unit(cap_w)
    if power_unit(need_w) == unit:
        dec = max(3, 1 - math.floor(math.log10(short / unit[0])))
        need_s, cap_s = power_text(need_w, decimals=dec, unit=unit), power_text(cap_w, decimals=dec, unit=unit)
    else:
        need_s, cap_s = power_text(need_w), power_text(cap_w)
    pct = 100 * short / cap_w
    return (f"power cap short by {power_text(short)}, {pct:.3g} % of the {cap_s} cap " if pct < 1000 else
            f"power cap short by {power_text(short)}, {pct:.0f} % of the {cap_s} cap ") + (
            f"(power.facility_cap_mw = {power.cap_mw:g}): the least-power plan needs {need_s} facility "
            f"power ({power.basis} basis, PUE {power.pue:g})")


def diagnose(problem: Problem, cols: Columns) -> str:
    """Why no plan exists: the binding constraint and by how much (read on the pools of one
    config each; mixing configs only adds power or GPUs to a range)."""
    cols = cols.whole()
    errs = cols.errors
    cfg_errs = [v for k, v in errs.items() if isinstance(k, int)]
    if not len(cols):
        if cfg_errs and len(cfg_errs) == len(cols.configs):
            return f"no GPU type fits the model: {cfg_errs[0]}"
        pool_errs = [v for k, v in errs.items() if not isinstance(k, int)]
        return f"SLO unreachable for any pool: {pool_errs[0] if pool_errs else 'no candidate pools'}"
    K = problem.pools.max_pools
    if not math.isfinite(best_path(cols, np.zeros(len(cols)), K)):
        pool_errs = [v for k, v in errs.items() if not isinstance(k, int)]
        last = [v for k, v in errs.items() if not isinstance(k, int) and k[1] == len(cols.bounds)]
        why = (last or pool_errs or ["no candidate pools cover the range"])[0]
        return f"no plan of at most {K} pools meets the SLOs over the whole length range: {why}"
    cap = problem.power.cap_w
    if cap is not None:
        need = best_path(cols, cols.provisioned_w, K)
        if need > cap:
            return power_shortfall(need, cap, problem.power)
    limits = {c.gpu: c.max_gpus for c in cols.configs if c.max_gpus is not None}
    if limits:
        need = best_path(cols, cols.gpus.astype(float), K)
        return (f"GPU inventory too small: the plan with fewest GPUs needs {need:.0f} GPUs; limits "
                + ", ".join(f"{g} {n}" for g, n in sorted(limits.items()))
                + (" (with the power cap)" if cap is not None else ""))
    return "no feasible plan (power cap and inventory together)"


def no_plan_in_time(problem: Problem) -> str:
    """The message of a solve whose time limit ended before any plan was found."""
    return (f"no plan found within the time limit (solver.time_limit_s = {problem.solver.time_limit_s:g} s, the limit "
            f"of the whole solve); raise it")
