r"""The fleet MILP: pool boundaries, GPU type / TP / admission per pool, instance counts.

Mathematics
-----------
Candidate boundaries 0 = b_0 < b_1 < ... < b_M split the routing-key range; the nodes
0..M form a DAG with an arc (i, j) for every i < j (the pool serving keys in (b_i, b_j]).
A *column* c is an arc a(c) = (i_c, j_c) with a config (GPU type g_c, TP, admission); the
sizing layer (``fleetopt.columns``) gives its coefficients, all exact for that pool:

    n_c   instances (integer, the least meeting P99 TTFT, P99 TPOT and the utilisation cap)
    G_c   GPUs = n_c x GPUs per instance
    E_c   expected IT power, W            P_c   provisioned facility power, W (cap basis)
    T_c   output tokens/s credited         $_c   cost, USD/h

Decision: x_c in {0, 1}, column c chosen.  Because n_c is fixed per column, integer
instance counts are exact and need no variables of their own.

    (flow)     sum_{c: i_c = 0} x_c = 1
               sum_{c: j_c = v} x_c = sum_{c: i_c = v} x_c        v = 1..M-1
               (so the chosen arcs form one path 0 -> M: every key served exactly once)
    (pools)    sum_c x_c <= K
    (stock)    sum_{c: g_c = g} G_c x_c <= S_g                    GPU types with inventory S_g
    (power)    sum_c P_c x_c <= cap_w                             when the site has a cap

Objectives (fixed demand):

    max_tokens_per_joule   max  sum T_c x_c / sum E_c x_c
                           = min sum E_c x_c when T is the same on every path (no
                           compress-and-route); otherwise Dinkelbach: q_0 = ratio of any
                           feasible plan, solve max sum (T_c - q_k E_c) x_c, q_{k+1} = ratio
                           of its solution, stop when the optimum is <= 0 (within 1e-9 T).
    min_cost               min  sum $_c x_c
    max_throughput         (``fleetopt.solve``) the largest demand scale s for which the
                           power-feasible set is non-empty: bisection on s, each step this
                           model with min sum E_c x_c at demand s x lambda.

Tightness: without (pools), (stock) and (power) the constraint matrix is a network matrix
(totally unimodular), so the LP relaxation is integral; the side constraints are single
knapsack rows, and the LP bound stays close (measured in benchmarks/results/solve_scaling.md).
Ties: columns are ordered by (arc, config) and HiGHS runs with fixed threads and seed, so
equal optima resolve the same way on every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class FleetModelData:
    """Column data handed to the model (arrays of one entry per column)."""

    n_nodes: int                 # M + 1
    arc_i: np.ndarray
    arc_j: np.ndarray
    gpu_type: list[str]
    gpus: np.ndarray
    max_pools: int
    stock: dict[str, int]        # GPU type -> inventory limit
    provisioned_w: np.ndarray
    cap_w: float | None


@dataclass
class SolveResult:
    status: str                  # optimal | time_limit | infeasible
    chosen: list[int]
    objective: float | None
    bound: float | None
    gap: float | None
    seconds: float
    variables: int
    constraints: int
    log: str = ""


def build(data: FleetModelData, weights: np.ndarray, sense: str = "min"):
    """The Pyomo model: flow, pool count, inventory and power rows; objective sum w_c x_c."""
    import pyomo.core as pc

    m = pc.ConcreteModel(name="fleet")
    C = range(len(weights))
    m.C = pc.Set(initialize=C, ordered=True)
    m.x = pc.Var(m.C, domain=pc.Binary)
    out_of = {v: [] for v in range(data.n_nodes)}
    into = {v: [] for v in range(data.n_nodes)}
    for c in C:
        out_of[int(data.arc_i[c])].append(c)
        into[int(data.arc_j[c])].append(c)
    m.flow = pc.ConstraintList()
    m.flow.add(sum(m.x[c] for c in out_of[0]) == 1)
    for v in range(1, data.n_nodes - 1):
        if into[v] or out_of[v]:
            m.flow.add(sum(m.x[c] for c in into[v]) - sum(m.x[c] for c in out_of[v]) == 0)
    m.pools = pc.Constraint(expr=sum(m.x[c] for c in C) <= data.max_pools)
    m.stock = pc.ConstraintList()
    for g, limit in sorted(data.stock.items()):
        cs = [c for c in C if data.gpu_type[c] == g]
        if cs:
            m.stock.add(sum(int(data.gpus[c]) * m.x[c] for c in cs) <= limit)
    if data.cap_w is not None:
        m.power = pc.Constraint(expr=sum(float(data.provisioned_w[c]) * m.x[c] for c in C) <= data.cap_w)
    m.obj = pc.Objective(expr=sum(float(weights[c]) * m.x[c] for c in C),
                         sense=pc.minimize if sense == "min" else pc.maximize)
    return m


def solve(model, time_limit_s: float, mip_gap: float, threads: int, seed: int, verbose: bool = False) -> SolveResult:
    """Solve with HiGHS (embedded through highspy) via Pyomo's contrib interface."""
    from pyomo.contrib.solver.common.results import TerminationCondition as TC
    from pyomo.contrib.solver.solvers.highs import Highs

    opt = Highs()
    t0 = time.perf_counter()
    res = opt.solve(model, load_solutions=False, raise_exception_on_nonoptimal_result=False, tee=verbose,
                    time_limit=time_limit_s, rel_gap=mip_gap, threads=threads,
                    solver_options={"random_seed": seed, "mip_abs_gap": 0.0})
    secs = time.perf_counter() - t0
    tc = res.termination_condition
    nv, ncon = len(model.x), sum(1 for _ in model.component_data_objects(_ctype("Constraint"), active=True))
    if tc in (TC.provenInfeasible, TC.infeasibleOrUnbounded, TC.locallyInfeasible):
        return SolveResult("infeasible", [], None, None, None, secs, nv, ncon)
    has_sol = res.incumbent_objective is not None
    if not has_sol:
        status = "time_limit" if tc == TC.maxTimeLimit else "infeasible"
        return SolveResult(status, [], None, res.objective_bound, None, secs, nv, ncon)
    res.solution_loader.load_vars()
    chosen = [c for c in model.C if model.x[c].value is not None and model.x[c].value > 0.5]
    obj, bound = float(res.incumbent_objective), res.objective_bound
    bound = float(bound) if bound is not None and math.isfinite(bound) else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-12)
    status = "optimal" if tc == TC.convergenceCriteriaSatisfied else "time_limit"
    return SolveResult(status, chosen, obj, bound, gap, secs, nv, ncon)


def _ctype(name: str):
    import pyomo.core as pc

    return getattr(pc, name)


def write_lp(model, path: str) -> None:
    """The model as an LP file (CPLEX LP format), symbolic names, for review and golden tests."""
    import pyomo.environ  # noqa: F401  (registers the LP writer)

    model.write(path, format="lp", io_options={"symbolic_solver_labels": True})
