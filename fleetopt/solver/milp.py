r"""The MILP stages of one ``fleetopt solve``, under one time limit.

``solver.time_limit_s`` is the limit of all of them together: every stage gets what is
left of it (HiGHS stops at the deadline, model building included), and the tie-break is
skipped, with a note, when nothing is left.  A stage that ends at the limit keeps its
incumbent (``time_limit`` with its gap); with none, the caller says "no plan found
within the time limit" (``fleetopt.NoPlanInTimeError``), never "infeasible".

Stages, for an objective min sum w_c x_c (cost, or energy when every plan credits the
same tokens):

1. an upper bound U from a feasible plan: the best one-pool plan, and with mixed pools
   (``pools.split_grid`` = m) the optimum over the coarser grids first (whole columns,
   then shares k/m on the divisors of m), whose plan is also HiGHS's first incumbent;
2. exact elimination (``fleetopt.solver.bounds.can_reach``): the columns whose path lower bound,
   plain and Lagrangian (multipliers mu >= 0 on the stock and power rows, the duals of
   the LP relaxation over the surviving columns), exceeds U are in no plan better than
   the known one and are dropped;
3. the MILP over what is left;
4. the lexicographic tie-break: among plans with sum w x <= z* (1 + mip_gap), fewest pools,
   then fewest GPUs (elimination again, against z* (1 + mip_gap)).

For max tokens per joule when plans credit different tokens (compress-and-route, paper
mode's sub-CDFs; ``fleetopt.solver.bounds.tokens_vary``), Dinkelbach's method on the ratio
(``fleetopt.solver.dinkelbach``).  The formulation is ``formulations.get("fleet")``, or
``fleet_mixed`` when columns take shares of their arcs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

import formulations
from fleetopt.columns import Columns
from fleetopt.problem import Problem
from fleetopt.solver.bounds import can_reach, lagrangian_weights, one_pool_plan, path_bounds, tokens_vary
from fleetopt.solver.dinkelbach import dinkelbach
from formulations.fleet import FleetModelData, lagrange_multipliers
from formulations.highs import SolveResult, solve_matrix, solve_pyomo

Multipliers = tuple[dict[str, float], float]
"""Lagrangian multipliers: ({GPU type: mu_g}, mu_P)."""


def model_data(problem: Problem, cols: Columns) -> FleetModelData:
    """The formulation's data for the columns: stock per GPU type (the least inventory
    named for it), the cap in W, shares when mixed pools are on."""
    stock: dict[str, int] = {}
    for cf in cols.configs:
        if cf.max_gpus is not None:
            stock[cf.gpu] = min(stock.get(cf.gpu, cf.max_gpus), cf.max_gpus)
    return FleetModelData(len(cols.bounds) + 1, cols.arc_i, cols.arc_j, [cols.configs[c].gpu for c in cols.cfg],
                          cols.gpus, problem.pools.max_pools, stock, cols.provisioned_w, problem.power.cap_w,
                          frac=cols.frac if cols.share_k is not None else None)


def formulation(data: FleetModelData) -> Any:
    """The registered formulation of ``data``: ``fleet_mixed`` when some column takes a
    share of its arc, else ``fleet``."""
    return formulations.get("fleet_mixed" if data.mixed else "fleet")


def simplest_weights(cols: Columns) -> np.ndarray:
    """Tie-break weights: one per pool (per member of a mixed pool) plus a fraction per GPU
    (fewer pools, then fewer GPUs); at most M x m columns are chosen, so the GPU terms
    together stay below one pool."""
    return 1.0 + cols.gpus / (10.0 * max(int(cols.gpus.max()), 1) * len(cols.bounds) * cols.grid)


class StagedSolve:
    """The MILP stages over ``cols`` for the instance's objective, sharing one deadline."""

    def __init__(self, problem: Problem, cols: Columns, verbose: bool = False) -> None:
        self.problem, self.cols, self.verbose = problem, cols, verbose
        self.s = problem.solver
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.s.time_limit_s
        self.notes: list[str] = []
        d = model_data(problem, cols)
        self.stock, self.cap = d.stock, d.cap_w
        self.every = np.arange(len(cols))
        self.iterations = 0
        self.nodes = 0
        """Branch-and-bound nodes over every MILP solved."""
        self.root_bound: float | None = None
        """The root node's dual bound of the optimum stage's MILP."""
        self.last_size = (0, 0)
        """(variables, rows) of the last MILP solved."""

    def left(self) -> float:
        """Seconds left of solver.time_limit_s."""
        return self.deadline - time.perf_counter()

    # --- one MILP over a subset of the columns ----------------------------------------

    def milp(self, keep: np.ndarray, w: np.ndarray, sense: str = "min",
             budget: tuple[np.ndarray, float] | None = None, start: list[int] | None = None) -> SolveResult:
        """The MILP over the columns ``keep`` (indices into ``cols``) with weights ``w`` (one
        per column of ``cols``), an optional budget row (w_b over all columns, limit) and a
        start plan; stops at the deadline; the chosen columns come back as indices into
        ``cols``."""
        s = self.s
        d = model_data(self.problem, self.cols.take(keep))
        if budget is not None:
            d.budget = (budget[0][keep], budget[1])
        form = formulation(d)
        if s.interface == "pyomo":
            left = self.left()
            if left <= 0:
                return SolveResult("time_limit", [], None, None, None, 0.0, d.n_vars(), 0)
            r = solve_pyomo(form.build(d, w[keep], sense), left, s.mip_gap, s.threads, s.seed, self.verbose,
                            s.presolve)
        else:
            pos = {int(c): k for k, c in enumerate(keep)}
            first = [] if start is None else [pos[c] for c in start if c in pos]
            r = solve_matrix(form.constraint_rows(d), d.n_vars(), w[keep], sense, s.time_limit_s, s.mip_gap,
                             s.threads, s.seed, self.verbose, s.presolve,
                             form.start_values(d, first) if first else None, deadline=self.deadline)
        r.chosen = [int(keep[c]) for c in r.chosen]
        self.last_size = (r.variables, r.constraints)
        self.nodes += r.nodes or 0
        return r

    # --- least weight: bound, elimination, MILP, tie-break ----------------------------

    def eliminate(self, w: np.ndarray, pool: np.ndarray, limit: float, lag_mu: Multipliers | None = None
                  ) -> tuple[np.ndarray, Multipliers | None]:
        """The columns of ``pool`` that can lie on a plan of weight <= limit (plain path
        bound, then the Lagrangian one with multipliers from the LP relaxation over the
        survivors, or ``lag_mu`` when given); returns (kept indices, the multipliers)."""
        if not math.isfinite(limit):
            return pool, lag_mu
        sub = self.cols.take(pool)
        keep = can_reach(sub, w[pool], limit)
        if self.stock or self.cap is not None:
            if lag_mu is None and keep.any():
                kk = np.flatnonzero(keep)
                d = model_data(self.problem, sub.take(kk))
                lp = lagrange_multipliers(d, formulation(d).constraint_rows(d), w[pool][kk], self.s.threads)
                lag_mu = (lp.mu_stock, lp.mu_power)
            if lag_mu is not None:
                keep &= can_reach(sub, w[pool], limit, lagrangian_weights(sub, w[pool], self.stock, self.cap, *lag_mu))
        return pool[keep], lag_mu

    def upper_bound(self, w: np.ndarray) -> tuple[float, list[int]]:
        """A feasible plan and its weight: the best one-pool plan, improved with mixed pools
        by the optimum over the coarsest grid that has a plan (whole columns first, then
        the shares on the divisors of m): the knee of mixed pools under binding stock,
        where no one-pool plan is feasible or the best one is far from the optimum."""
        cols = self.cols
        ub, plan = one_pool_plan(cols, w, self.stock, self.cap)
        if cols.share_k is None or not np.any(cols.frac < 1.0):
            return ub, plan
        m = cols.grid
        for dv in [d for d in range(1, m) if m % d == 0]:
            coarse = self.every[(cols.share_k * dv) % m == 0]
            if not len(coarse) or self.left() <= 0:
                continue
            keep, _ = self.eliminate(w, coarse, ub)
            r = self.milp(keep, w, start=plan)
            if r.chosen:
                val = float(w[r.chosen].sum())
                if val < ub:
                    ub, plan = val, r.chosen
                break
        return ub, plan

    def minimise(self, w: np.ndarray) -> tuple[SolveResult, Multipliers | None]:
        """min sum w_c x_c over every plan: upper bound, elimination, the MILP started from
        the bound's plan.  When the deadline leaves HiGHS no time to find a plan, the
        bound's plan is the incumbent (gap against the path lower bound)."""
        ub, plan = self.upper_bound(w)
        keep, mu = self.eliminate(w, self.every, ub)
        if self.left() <= 0 and not plan:
            return SolveResult("time_limit", [], None, None, None, 0.0, 0, 0), mu
        r = self.milp(keep, w, start=plan or None) if self.left() > 0 else None
        if r is not None:
            self.root_bound = r.root_bound
        if (r is None or not r.chosen) and plan:          # the deadline came first: the known plan
            lb = float(path_bounds(self.cols, w).min())
            size = (r.variables, r.constraints) if r is not None else self.last_size
            gap = abs(ub - lb) / max(abs(ub), 1e-12)
            proven = gap <= self.s.mip_gap
            r = SolveResult("optimal" if proven else "time_limit", list(plan), ub, lb, gap, 0.0, *size)
            self.notes.append("the time limit came before the MILP found a plan: the plan is the best one known "
                              + ("before it, optimal by the path lower bound" if proven else
                                 "before it, not proven optimal"))
        if r is None:                                     # no time left and no plan known
            r = SolveResult("time_limit", [], None, None, None, 0.0, *self.last_size)
        if r.chosen:                                      # the reported objective is the plan's own weight
            true = float(w[r.chosen].sum())
            r.bound = min(r.bound, true) if r.bound is not None else true
            r.objective = true
            r.gap = abs(true - r.bound) / max(abs(true), 1e-12)
        return r, mu

    def tie_break(self, res: SolveResult, budget_w: np.ndarray, limit: float, keep: np.ndarray) -> SolveResult:
        """Among plans with sum budget_w x <= limit (the optimum is one), the fewest pools,
        then the fewest GPUs; ``res`` keeps its objective, bound and status.  Skipped with
        a note when no time is left."""
        if self.left() <= 0:
            self.notes.append("tie-break skipped: no time left within solver.time_limit_s (the plan is the "
                              "optimum found, possibly not the simplest of equal plans)")
            return res
        second = self.milp(keep, simplest_weights(self.cols), budget=(budget_w, limit), start=res.chosen)
        if second.chosen and float(budget_w[second.chosen].sum()) <= limit:
            res.chosen = second.chosen
        if second.status == "time_limit":
            self.notes.append("tie-break stopped at the time limit: the plan is optimal, possibly not the simplest "
                              "of equal plans")
        return res

    # --- the instance's objective -------------------------------------------------------

    def run(self) -> tuple[SolveResult, int]:
        """The plan for the instance's objective; (result, Dinkelbach iterations).  The
        result's ``seconds`` is the wall time of all stages, its notes what was cut short."""
        problem, cols = self.problem, self.cols
        tol = max(self.s.mip_gap, 1e-9)
        ratio = problem.objective == "max_tokens_per_joule" and tokens_vary(cols, problem.pools.max_pools)
        w = cols.cost_h if problem.objective == "min_cost" else cols.energy_w
        res, mu = self.minimise(w)
        if res.chosen and not ratio:
            if res.status == "optimal":
                assert res.objective is not None and res.bound is not None, "a plan has its objective and bound"
                lim, bound = res.objective * (1 + tol), res.bound
                keep, _ = self.eliminate(w, self.every, lim, mu)       # only these can be in such a plan
                res = self.tie_break(res, w, lim, keep)                # keeps the bound
                res.objective = float(w[res.chosen].sum())
                res.gap = abs(res.objective - bound) / max(abs(res.objective), 1e-12)
            else:
                self.notes.append("tie-break skipped: the optimum stage ended at the time limit")
        elif res.chosen:
            res = dinkelbach(self, res, tol)
        res.seconds = time.perf_counter() - self.t0
        res.notes = self.notes
        res.nodes, res.root_bound = self.nodes, self.root_bound
        return res, self.iterations
