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

Mixed pools (``pools.split_grid`` = m > 1): a column may also take the share f_c = k_c / m
of its arc's traffic (k_c = 1..m; sized at f_c x the arc's rate).  Arc variables
z_a in {0, 1} then carry the path, and the columns on an arc must cover it exactly:

    (flow)     as above, on z_a instead of x_c
    (split)    sum_{c: a(c) = a} f_c x_c = z_a                    every arc a
    (pools)    sum_a z_a <= K
    (stock), (power) and the objective stay on x.

With m = 1 every f_c = 1 and the model is the one above (no z; the golden LP file is it).

Objectives (fixed demand):

    max_tokens_per_joule   max  sum T_c x_c / sum E_c x_c
                           = min sum E_c x_c when every plan credits the same tokens
                           (max_P T(P) = min_P T(P) over paths P of <= K arcs, each arc at
                           its largest / smallest T_c / f_c); otherwise (paper mode's
                           sub-CDFs, the paper's compress-and-route) Dinkelbach: q_0 = ratio
                           of the least-energy plan, solve max sum (T_c - q_k E_c) x_c,
                           q_{k+1} = ratio of its solution, stop when the optimum is <= 0
                           (within 1e-9 T); bound q + max(F_ub, 0) / E_lb (``fleetopt.milp``).
    min_cost               min  sum $_c x_c
    max_throughput         (``fleetopt.solve``) the largest demand scale s for which the
                           power-feasible set is non-empty: bisection on s, each step this
                           model with min sum E_c x_c at demand s x lambda.

Tightness: without (pools), (stock) and (power) the constraint matrix is a network matrix
(totally unimodular), so the LP relaxation is integral; the side constraints are single
knapsack rows, and the LP bound stays close (measured in benchmarks/results/solve_scaling.md).
With mixed pools the split rows do not weaken it further where it was measured: on the
heterogeneous instance with four GPU types stocked at 40 (the knee of issue 16) the LP bound
is 93,250 W at split_grid 1 and 4 alike, against the optimum 94,600 W; the gap is the stock
rows'.  Three strengthenings of the split rows were tried there and left out: none moved
the LP bound; x_c <= z_a per column and sum_{c on a, f_c > 1/2} x_c <= z_a per arc did not
shorten the MILP either; at most one column per (arc, config) halved the unreduced model's
MILP time but is valid only where one group of a config is never worse than two, which the
sizing does not guarantee.  What restores speed is elimination against a good plan.

Elimination (``fleetopt.bounds``, exact): given a feasible plan of weight U, a column whose
path lower bound exceeds U lies on no better plan and is dropped before the MILP.  The path
bound relaxes K, stock and cap:

    LB_c = pre(i_c) + w_c + (1 - f_c) l_a + suf(j_c),   l_a = min_{c' on a} w_{c'} / f_{c'},

pre / suf the cheapest paths to i_c / from j_c with arcs priced at l_a.  Its Lagrangian
version prices the relaxed rows with multipliers mu >= 0 (the duals of the LP relaxation):
every plan within stock and cap has sum w x >= sum w' x - k with w'_c = w_c + mu_{g_c} G_c
+ mu_P P_c and k = sum_g mu_g S_g + mu_P cap, so LB'_c - k > U eliminates c too.
Ties (lexicographic, ``fleetopt.milp``): after the optimum z* is found, a second solve
adds the row sum w_c x_c <= z* (1 + mip_gap) and minimises the number of pools, then GPUs,
so among plans equal within the proven gap the simplest wins; columns are ordered by (arc, config) and HiGHS
runs with fixed threads and seed, so the choice is the same on every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

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
    budget: tuple[np.ndarray, float] | None = None
    """(w, z): the row sum w_c x_c <= z, for the lexicographic tie-break stage."""
    frac: np.ndarray | None = None
    """Per column, its share f_c of the arc's traffic; None (or all 1) = no mixed pools."""

    @property
    def mixed(self) -> bool:
        return self.frac is not None and bool(np.any(self.frac < 1.0))

    def arcs(self) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The distinct arcs (sorted) and each column's arc index."""
        keys = sorted({(int(i), int(j)) for i, j in zip(self.arc_i, self.arc_j)})
        pos = {a: k for k, a in enumerate(keys)}
        return keys, np.array([pos[(int(i), int(j))] for i, j in zip(self.arc_i, self.arc_j)], int)

    def n_vars(self) -> int:
        """x_c for every column, then z_a for every arc when mixed pools are on."""
        return len(self.arc_i) + (len(self.arcs()[0]) if self.mixed else 0)


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
    notes: list[str] = field(default_factory=list)
    """What the caller should know beyond the status (a skipped stage, a heuristic plan)."""


def constraint_rows(data: FleetModelData) -> list[tuple[str, list[int], list[float], float, float]]:
    """Every constraint row once, as (family, variable indices, coefficients, lower, upper):
    the single definition both transports below read.  Variables: x_c (columns 0..n-1),
    then z_a (arcs) when mixed pools are on."""
    n = len(data.arc_i)
    if data.mixed:                      # the path on arc variables z, linked to the shares
        keys, arc_of = data.arcs()
        tails, heads = [n + k for k in range(len(keys))], keys
        path_i = [i for i, _ in heads]
        path_j = [j for _, j in heads]
    else:
        tails, path_i, path_j = list(range(n)), [int(x) for x in data.arc_i], [int(x) for x in data.arc_j]
    out_of = {v: [] for v in range(data.n_nodes)}
    into = {v: [] for v in range(data.n_nodes)}
    for var, i, j in zip(tails, path_i, path_j):
        out_of[i].append(var)
        into[j].append(var)
    rows = [("flow", out_of[0], [1.0] * len(out_of[0]), 1.0, 1.0)]
    for v in range(1, data.n_nodes - 1):
        if into[v] or out_of[v]:
            rows.append(("flow", into[v] + out_of[v], [1.0] * len(into[v]) + [-1.0] * len(out_of[v]), 0.0, 0.0))
    if data.mixed:
        for k in range(len(keys)):
            cs = [int(c) for c in np.flatnonzero(arc_of == k)]
            rows.append(("split", cs + [n + k], [float(data.frac[c]) for c in cs] + [-1.0], 0.0, 0.0))
    rows.append(("pools", tails, [1.0] * len(tails), -math.inf, float(data.max_pools)))
    for g, limit in sorted(data.stock.items()):
        cs = [c for c in range(n) if data.gpu_type[c] == g]
        if cs:
            rows.append(("stock", cs, [float(data.gpus[c]) for c in cs], -math.inf, float(limit)))
    if data.cap_w is not None:
        rows.append(("power", list(range(n)), [float(x) for x in data.provisioned_w], -math.inf, float(data.cap_w)))
    if data.budget is not None:
        w, z = data.budget
        rows.append(("budget", list(range(n)), [float(x) for x in w], -math.inf, float(z)))
    return rows


def build(data: FleetModelData, weights: np.ndarray, sense: str = "min"):
    """The Pyomo model: one indexed constraint per family over ``constraint_rows``;
    objective sum w_c x_c."""
    import pyomo.core as pc

    m = pc.ConcreteModel(name="fleet")
    C = range(len(weights))
    m.C = pc.Set(initialize=C, ordered=True)
    m.x = pc.Var(m.C, domain=pc.Binary)
    n = len(weights)
    if data.mixed:
        m.A = pc.Set(initialize=range(data.n_vars() - n), ordered=True)
        m.z = pc.Var(m.A, domain=pc.Binary)
    var = lambda k: m.x[k] if k < n else m.z[k - n]  # noqa: E731
    for fam in ("flow", "split", "pools", "stock", "power", "budget"):
        setattr(m, fam, pc.ConstraintList())
    for fam, idx, coef, lo, up in constraint_rows(data):
        expr = sum(a * var(c) for c, a in zip(idx, coef))
        cl = getattr(m, fam)
        if lo == up:
            cl.add(expr == lo)
        else:
            cl.add(expr <= up)
    m.obj = pc.Objective(expr=sum(float(weights[c]) * m.x[c] for c in C),
                         sense=pc.minimize if sense == "min" else pc.maximize)
    return m


def _highs_model(highspy, data: FleetModelData, weights: np.ndarray, sense: str, integer: bool):
    """The rows of ``constraint_rows`` as a HighsLp (x_c then z_a, bounds [0, 1]); integer
    or its LP relaxation."""
    rows = constraint_rows(data)
    n_cols = len(weights)
    n = data.n_vars()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, len(rows)
    lp.col_cost_ = np.concatenate([np.asarray(weights, float), np.zeros(n - n_cols)]) * (1.0 if sense == "min" else -1.0)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.row_lower_ = np.array([r[3] if math.isfinite(r[3]) else -highspy.kHighsInf for r in rows])
    lp.row_upper_ = np.array([r[4] if math.isfinite(r[4]) else highspy.kHighsInf for r in rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.concatenate(([0], np.cumsum([len(r[1]) for r in rows]))).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([np.asarray(r[1], np.int32) for r in rows])
    lp.a_matrix_.value_ = np.concatenate([np.asarray(r[2], float) for r in rows])
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    return lp, rows


@dataclass
class LpRelaxation:
    """The LP relaxation of min sum w_c x_c: its optimum (None unless solved to
    optimality) and non-negative multipliers of the (stock) rows, per GPU type, and of the
    (power) row."""

    value: float | None
    mu_stock: dict[str, float]
    mu_power: float


def lp_relaxation(data: FleetModelData, weights: np.ndarray, threads: int = 1) -> LpRelaxation:
    r"""The LP relaxation (x, z in [0, 1]) of min sum w_c x_c (weights >= 0), its value and
    the duals of the (stock) and (power) rows as multipliers mu >= 0.  Any mu >= 0 gives a
    valid Lagrangian bound (``fleetopt.bounds``): for every plan x within stock and cap,

        sum_c w_c x_c >= sum_c (w_c + mu_{g_c} G_c + mu_P P_c) x_c - sum_g mu_g S_g - mu_P cap_w

    and the LP duals make the right-hand side largest at the LP optimum.  Multipliers are 0
    when the LP is not solved to optimality."""
    import highspy

    h = _new_highs(highspy, False)
    for k, v in (("output_flag", False), ("threads", int(threads)), ("presolve", "off")):
        h.setOptionValue(k, v)
    lp, rows = _highs_model(highspy, data, weights, "min", integer=False)
    h.passModel(lp)
    h.run()
    stock = {g: 0.0 for g in data.stock}
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return LpRelaxation(None, stock, 0.0)
    dual = np.asarray(h.getSolution().row_dual)
    power = 0.0
    for k, (fam, idx, _, _, _) in enumerate(rows):
        mu = max(0.0, -float(dual[k]))           # a <= row of a min problem: HiGHS reports dual <= 0
        if fam == "stock":
            stock[data.gpu_type[idx[0]]] = mu
        elif fam == "power":
            power = mu
    return LpRelaxation(float(h.getInfo().objective_function_value), stock, power)


def solve_direct(data: FleetModelData, weights: np.ndarray, sense: str, time_limit_s: float, mip_gap: float,
                 threads: int, seed: int, verbose: bool = False, presolve: bool = False,
                 start: list[int] | None = None, deadline: float | None = None) -> SolveResult:
    """The same rows passed to HiGHS as a matrix through highspy (no Pyomo import: about
    0.3 s less per process).  Equal optima to ``solve(build(...))`` are tested.  ``start``:
    chosen columns of a feasible plan, given to HiGHS as its first incumbent.  ``deadline``
    (a ``time.perf_counter`` instant): HiGHS stops there at the latest (the time taken to
    build the model counts), whatever ``time_limit_s`` says."""
    import highspy

    n_cols = len(weights)
    n = data.n_vars()
    h = _new_highs(highspy, verbose)
    lp, rows = _highs_model(highspy, data, weights, sense, integer=True)
    for k, v in (("output_flag", bool(verbose)), ("log_to_console", bool(verbose)),
                 ("mip_rel_gap", float(mip_gap)), ("mip_abs_gap", 0.0), ("threads", int(threads)),
                 ("random_seed", int(seed)), ("presolve", "on" if presolve else "off")):
        h.setOptionValue(k, v)
    t0 = time.perf_counter()
    h.passModel(lp)
    if start:
        x0 = np.zeros(n)
        x0[start] = 1.0
        if data.mixed:                           # the arcs the start's columns lie on
            _, arc_of = data.arcs()
            x0[n_cols + np.unique(arc_of[start])] = 1.0
        sol = highspy.HighsSolution()
        sol.col_value = x0.tolist()
        sol.value_valid = True
        h.setSolution(sol)
    limit = float(time_limit_s) if deadline is None else min(float(time_limit_s), deadline - time.perf_counter())
    if limit <= 0:
        return SolveResult("time_limit", [], None, None, None, 0.0, n, len(rows))
    h.setOptionValue("time_limit", limit)
    h.run()
    secs = time.perf_counter() - t0
    st = h.getModelStatus()
    info = h.getInfo()
    M = highspy.HighsModelStatus
    if st in (M.kInfeasible, M.kUnboundedOrInfeasible):
        return SolveResult("infeasible", [], None, None, None, secs, n, len(rows))
    if info.primal_solution_status != 2:        # no feasible solution
        status = "time_limit" if st == M.kTimeLimit else "infeasible"
        return SolveResult(status, [], None, None, None, secs, n, len(rows))
    x = np.asarray(h.getSolution().col_value)[:n_cols]
    chosen = [int(c) for c in np.flatnonzero(x > 0.5)]
    sign = 1.0 if sense == "min" else -1.0
    obj = sign * float(info.objective_function_value)
    bound = sign * float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-12)
    return SolveResult("optimal" if st == M.kOptimal else "time_limit", chosen, obj, bound, gap, secs, n, len(rows))


def solve(model, time_limit_s: float, mip_gap: float, threads: int, seed: int, verbose: bool = False,
          presolve: bool = False) -> SolveResult:
    """Solve with HiGHS (embedded through highspy) via Pyomo's contrib interface."""
    from pyomo.contrib.solver.common.results import TerminationCondition as TC
    from pyomo.contrib.solver.solvers.highs import Highs

    opt = Highs()
    t0 = time.perf_counter()
    res = opt.solve(model, load_solutions=False, raise_exception_on_nonoptimal_result=False, tee=verbose,
                    time_limit=time_limit_s, rel_gap=mip_gap, threads=threads,
                    solver_options={"random_seed": seed, "mip_abs_gap": 0.0, "presolve": "on" if presolve else "off"})
    secs = time.perf_counter() - t0
    tc = res.termination_condition
    nv = len(model.x) + (len(model.z) if hasattr(model, "z") else 0)
    ncon = sum(len(getattr(model, f)) for f in ("flow", "split", "pools", "stock", "power", "budget"))
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


def _new_highs(highspy, verbose: bool):
    """A Highs object; its constructor prints a banner to the C-level stdout, which a
    JSON consumer must not see, so stdout's descriptor is pointed at /dev/null meanwhile."""
    import os
    import sys

    if verbose:
        return highspy.Highs()
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def write_lp(model, path: str) -> None:
    """The model as an LP file (CPLEX LP format, from the .lp suffix), symbolic names, for review
    and golden tests."""
    import pyomo.environ  # noqa: F401  (registers the LP writer)

    model.write(path, io_options={"symbolic_solver_labels": True})
