r"""Dinkelbach's method for max tokens per joule when plans credit different tokens
(compress-and-route, paper mode's sub-CDFs; ``fleetopt.solver.bounds.tokens_vary``): a
sequence of the least-weight MILPs of ``fleetopt.solver.milp`` with weights T - q E.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from fleetopt.columns import Columns
from formulations.highs import SolveResult

DINKELBACH_MAX = 50
"""Iterations before the ratio is reported as the best found (``time_limit``)."""


class Stages(Protocol):
    """What the method needs of the MILP stages (``fleetopt.solver.milp.StagedSolve``)."""

    cols: Columns
    every: np.ndarray
    iterations: int
    notes: list[str]
    last_size: tuple[int, int]

    def left(self) -> float:
        """Seconds left of the time limit."""
        ...

    def milp(self, keep: np.ndarray, w: np.ndarray, sense: str = "min",
             budget: tuple[np.ndarray, float] | None = None, start: list[int] | None = None) -> SolveResult:
        """One MILP over columns ``keep`` with weights ``w``."""
        ...

    def tie_break(self, res: SolveResult, budget_w: np.ndarray, limit: float, keep: np.ndarray) -> SolveResult:
        """The simplest plan among those with sum budget_w x <= limit."""
        ...


def dinkelbach(stage: Stages, first: SolveResult, tol: float) -> SolveResult:
    r"""max T(x) / E(x) = sum T_c x_c / sum E_c x_c from the least-energy plan ``first``:

    q_0 = T(x_0) / E(x_0),
    F(q_k) = max_x T(x) - q_k E(x),  x_{k+1} its maximiser,  q_{k+1} = T(x_{k+1}) / E(x_{k+1}),

    stopping when F(q_k) <= 1e-9 T(x_k).  Bound: every plan has T(x) - q E(x) <= F_ub (the
    dual bound of the last stage), so T(x) / E(x) <= q + max(F_ub, 0) / E_lb with E_lb the
    least-energy stage's lower bound.  Tie-break: among plans with T(x) / E(x) >= q (1 -
    mip_gap), i.e. sum (q (1 - mip_gap) E_c - T_c) x_c <= 0, fewest pools, then GPUs.
    Stops at the time limit or after DINKELBACH_MAX iterations (``time_limit``, with a note)."""
    cols = stage.cols
    T, E = cols.tokens_s, cols.energy_w
    e_lb = first.bound if first.bound is not None and first.bound > 0 else float(E[first.chosen].sum())
    res, status, size = first, first.status, (first.variables, first.constraints)
    bound, converged = math.inf, False
    while stage.iterations < DINKELBACH_MAX:
        q = float(T[res.chosen].sum() / E[res.chosen].sum())
        if stage.left() <= 0:
            status = "time_limit"
            break
        stage.iterations += 1
        nxt = stage.milp(stage.every, T - q * E, "max", start=res.chosen)
        size = stage.last_size
        if not nxt.chosen:
            status = "time_limit" if nxt.status == "time_limit" else status
            break
        if nxt.bound is not None:          # every plan: T - q E <= F_ub, so T / E <= q + F_ub+ / E_lb
            bound = min(bound, q + max(nxt.bound, 0.0) / e_lb)
        if nxt.status != "optimal":
            status = "time_limit"
        if float((T - q * E)[nxt.chosen].sum()) <= 1e-9 * float(T[res.chosen].sum()):
            converged = True                                 # q is optimal (within the stage's gap)
            break
        res = nxt
    if not converged and status == "optimal":                # DINKELBACH_MAX reached
        status = "time_limit"
    if status == "optimal":
        q = float(T[res.chosen].sum() / E[res.chosen].sum())
        res = stage.tie_break(res, q * (1 - tol) * E - T, 0.0, stage.every)
    else:
        stage.notes.append(f"Dinkelbach stopped before proving the ratio (time limit or {DINKELBACH_MAX} "
                          f"iterations): the ratio is the best found")
    out = SolveResult(status, res.chosen, None, None, None, 0.0, *size)
    out.objective = float(T[out.chosen].sum() / E[out.chosen].sum())
    out.bound = max(bound, out.objective)
    out.gap = (out.bound - out.objective) / out.objective if math.isfinite(out.bound) else None
    return out
