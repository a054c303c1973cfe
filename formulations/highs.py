"""Transports: a formulation's rows to HiGHS, and the result back.

A formulation states its constraints once, as ``Row`` records (family, index key, variable
indices, coefficients, lower and upper bound); two transports read them:

* ``solve_matrix``: the rows as a sparse matrix handed to HiGHS through highspy (no Pyomo
  import, about 0.3 s less per process), with a start plan and a deadline;
* ``solve_pyomo``: the formulation's Pyomo model (``build_model``, components named like
  the statement) through ``pyomo.contrib.solver.solvers.highs.Highs``, the class rather
  than the ``'highs'`` string.

Both return a ``SolveResult``: status, chosen columns, objective, dual bound, gap, time,
size and, where HiGHS reports them (the matrix transport), branch-and-bound nodes and the
root node's dual bound.  Equal optima through both are tested.  ``lp_relaxation`` solves
the LP relaxation and returns its row duals.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Row(NamedTuple):
    """One constraint row: ``lower <= sum_k coef[k] x[idx[k]] <= upper`` (equal bounds: an
    equality), of ``family`` at index ``key`` (None for a family of one row)."""

    family: str
    key: Any
    idx: list[int]
    coef: list[float]
    lower: float
    upper: float


@dataclass
class SolveResult:
    """What a MILP solve gives back."""

    status: str
    """``optimal`` | ``time_limit`` | ``infeasible``."""
    chosen: list[int]
    """The columns chosen (x = 1), indices into the formulation's columns."""
    objective: float | None
    bound: float | None
    """The dual bound at the end (a lower bound of a min problem)."""
    gap: float | None
    seconds: float
    variables: int
    constraints: int
    log: str = ""
    notes: list[str] = field(default_factory=list)
    """What the caller should know beyond the status (a skipped stage, a heuristic plan)."""
    nodes: int | None = None
    """Branch-and-bound nodes HiGHS explored (None when the transport does not say)."""
    root_bound: float | None = None
    """The dual bound when the root node was done, cuts included (None when not reported)."""


def new_highs(highspy: Any, verbose: bool) -> Any:
    """A Highs object; its constructor prints a banner to the C-level stdout, which a
    JSON consumer must not see, so stdout's descriptor is pointed at /dev/null meanwhile."""
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


def _lp(highspy: Any, rows: Sequence[Row], n_vars: int, cost: np.ndarray, integer: bool) -> Any:
    """The rows as a HighsLp over ``n_vars`` variables in [0, 1] with ``cost``; integer or
    its LP relaxation."""
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_vars, len(rows)
    lp.col_cost_ = cost
    lp.col_lower_, lp.col_upper_ = np.zeros(n_vars), np.ones(n_vars)
    lp.row_lower_ = np.array([r.lower if math.isfinite(r.lower) else -highspy.kHighsInf for r in rows])
    lp.row_upper_ = np.array([r.upper if math.isfinite(r.upper) else highspy.kHighsInf for r in rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.concatenate(([0], np.cumsum([len(r.idx) for r in rows]))).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([np.asarray(r.idx, np.int32) for r in rows])
    lp.a_matrix_.value_ = np.concatenate([np.asarray(r.coef, float) for r in rows])
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_vars
    return lp


def _set_options(h: Any, verbose: bool, mip_gap: float, threads: int, seed: int, presolve: bool) -> None:
    """Quiet unless verbose, the relative gap alone (no absolute gap), fixed threads and
    seed (the same plan on every run), presolve as asked."""
    for k, v in (("output_flag", bool(verbose)), ("log_to_console", bool(verbose)),
                 ("mip_rel_gap", float(mip_gap)), ("mip_abs_gap", 0.0), ("threads", int(threads)),
                 ("random_seed", int(seed)), ("presolve", "on" if presolve else "off")):
        h.setOptionValue(k, v)


def solve_matrix(rows: Sequence[Row], n_vars: int, weights: np.ndarray, sense: str, time_limit_s: float,
                 mip_gap: float, threads: int, seed: int, verbose: bool = False, presolve: bool = False,
                 start: np.ndarray | None = None, deadline: float | None = None) -> SolveResult:
    """min (or max, ``sense``) sum_c w_c x_c over the rows, x binary, through highspy.
    ``weights`` cover the first len(weights) variables (the columns; the rest cost 0) and
    ``chosen`` indexes them.  ``start``: a full 0/1 vector of a feasible plan, HiGHS's first
    incumbent.  ``deadline`` (a ``time.perf_counter`` instant): HiGHS stops there at the
    latest (the time taken to build the model counts), whatever ``time_limit_s`` says."""
    import highspy  # heavy: HiGHS itself

    n_cols = len(weights)
    h = new_highs(highspy, verbose)
    cost = np.concatenate([np.asarray(weights, float), np.zeros(n_vars - n_cols)]) * (1.0 if sense == "min" else -1.0)
    lp = _lp(highspy, rows, n_vars, cost, integer=True)
    _set_options(h, verbose, mip_gap, threads, seed, presolve)
    t0 = time.perf_counter()
    h.passModel(lp)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, float).tolist()
        sol.value_valid = True
        h.setSolution(sol)
    limit = float(time_limit_s) if deadline is None else min(float(time_limit_s), deadline - time.perf_counter())
    if limit <= 0:
        return SolveResult("time_limit", [], None, None, None, 0.0, n_vars, len(rows))
    h.setOptionValue("time_limit", limit)
    root: list[float] = []

    def at_root(event: Any) -> None:
        """The dual bound while HiGHS is still at the root node (the last one is its bound)."""
        d = event.data_out
        if d.mip_node_count == 0 and math.isfinite(d.mip_dual_bound):
            root[:] = [float(d.mip_dual_bound)]

    h.cbMipInterrupt.subscribe(at_root)
    h.run()
    secs = time.perf_counter() - t0
    st = h.getModelStatus()
    info = h.getInfo()
    status = highspy.HighsModelStatus
    sign = 1.0 if sense == "min" else -1.0
    nodes = int(info.mip_node_count) if info.mip_node_count >= 0 else None
    root_bound = sign * root[0] if root else None
    if st in (status.kInfeasible, status.kUnboundedOrInfeasible):
        return SolveResult("infeasible", [], None, None, None, secs, n_vars, len(rows), nodes=nodes)
    if info.primal_solution_status != 2:        # no feasible solution
        state = "time_limit" if st == status.kTimeLimit else "infeasible"
        return SolveResult(state, [], None, None, None, secs, n_vars, len(rows), nodes=nodes)
    x = np.asarray(h.getSolution().col_value)[:n_cols]
    chosen = [int(c) for c in np.flatnonzero(x > 0.5)]
    obj = sign * float(info.objective_function_value)
    bound = sign * float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-12)
    if root_bound is None and nodes is not None and nodes <= 1:        # solved at the root: its bound is final
        root_bound = bound
    return SolveResult("optimal" if st == status.kOptimal else "time_limit", chosen, obj, bound, gap, secs, n_vars,
                       len(rows), nodes=nodes, root_bound=root_bound)


@dataclass
class LpSolution:
    """The LP relaxation's optimum (None unless solved to optimality) and its row duals."""

    value: float | None
    row_dual: np.ndarray


def lp_relaxation(rows: Sequence[Row], n_vars: int, weights: np.ndarray, threads: int = 1) -> LpSolution:
    """min sum_c w_c x_c over the rows with x in [0, 1] (presolve off), its value and the
    duals of its rows (empty when not solved to optimality)."""
    import highspy  # heavy: HiGHS itself

    h = new_highs(highspy, False)
    for k, v in (("output_flag", False), ("threads", int(threads)), ("presolve", "off")):
        h.setOptionValue(k, v)
    cost = np.concatenate([np.asarray(weights, float), np.zeros(n_vars - len(weights))])
    h.passModel(_lp(highspy, rows, n_vars, cost, integer=False))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return LpSolution(None, np.zeros(0))
    return LpSolution(float(h.getInfo().objective_function_value), np.asarray(h.getSolution().row_dual))


def build_model(name: str, rows: Sequence[Row], variables: Sequence[tuple[str, int]], weights: np.ndarray,
                sense: str = "min") -> Any:
    """A Pyomo model of the rows whose components read like the statement: one binary
    ``Var`` per block of ``variables`` ((name, count) in index order: ``x`` the columns,
    then a formulation's own), one ``Constraint`` per family (indexed by the rows' keys, or
    scalar for a family of one unkeyed row), and ``obj`` = sum_c w_c x_c over the first
    len(weights) variables."""
    import pyomo.core as pc  # heavy: Pyomo

    m = pc.ConcreteModel(name=name)
    var_of: list[Any] = []
    for vname, count in variables:
        setattr(m, vname, pc.Var(range(count), domain=pc.Binary))
        var = getattr(m, vname)
        var_of += [var[k] for k in range(count)]
    families: dict[str, list[Row]] = {}
    for r in rows:
        families.setdefault(r.family, []).append(r)

    def expr(r: Row) -> Any:
        lhs = sum(a * var_of[c] for c, a in zip(r.idx, r.coef))
        if r.lower == r.upper:
            return lhs == r.lower
        if math.isfinite(r.lower):
            return pc.inequality(r.lower, lhs, r.upper)
        return lhs <= r.upper

    for fam, frows in families.items():
        if len(frows) == 1 and frows[0].key is None:
            setattr(m, fam, pc.Constraint(expr=expr(frows[0])))
        else:
            by_key = {r.key: r for r in frows}
            rule = lambda _m, *k, d=by_key: expr(d[k[0] if len(k) == 1 else k])
            setattr(m, fam, pc.Constraint(list(by_key), rule=rule))
    m.obj = pc.Objective(expr=sum(float(weights[c]) * var_of[c] for c in range(len(weights))),
                         sense=pc.minimize if sense == "min" else pc.maximize)
    m._columns = var_of[:len(weights)]
    m._n_vars, m._n_rows = len(var_of), len(rows)
    return m


def solve_pyomo(model: Any, time_limit_s: float, mip_gap: float, threads: int, seed: int, verbose: bool = False,
                presolve: bool = False) -> SolveResult:
    """A model of ``build_model`` solved by HiGHS through Pyomo's contrib interface;
    ``chosen`` indexes its columns."""
    from pyomo.contrib.solver.common.results import TerminationCondition as TC  # heavy: Pyomo
    from pyomo.contrib.solver.solvers.highs import Highs

    t0 = time.perf_counter()
    res = Highs().solve(model, load_solutions=False, raise_exception_on_nonoptimal_result=False, tee=verbose,
                        time_limit=time_limit_s, rel_gap=mip_gap, threads=threads,
                        solver_options={"random_seed": seed, "mip_abs_gap": 0.0,
                                        "presolve": "on" if presolve else "off"})
    secs = time.perf_counter() - t0
    tc = res.termination_condition
    nv, ncon = int(model._n_vars), int(model._n_rows)
    if tc in (TC.provenInfeasible, TC.infeasibleOrUnbounded, TC.locallyInfeasible):
        return SolveResult("infeasible", [], None, None, None, secs, nv, ncon)
    if res.incumbent_objective is None:
        return SolveResult("time_limit" if tc == TC.maxTimeLimit else "infeasible", [], None, res.objective_bound,
                           None, secs, nv, ncon)
    res.solution_loader.load_vars()
    chosen = [c for c, v in enumerate(model._columns) if v.value is not None and v.value > 0.5]
    obj, bound = float(res.incumbent_objective), res.objective_bound
    bound = float(bound) if bound is not None and math.isfinite(bound) else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-12)
    status = "optimal" if tc == TC.convergenceCriteriaSatisfied else "time_limit"
    return SolveResult(status, chosen, obj, bound, gap, secs, nv, ncon)


def write_lp(model: Any, path: str) -> None:
    """The model as an LP file (CPLEX LP format, from the .lp suffix) with symbolic names,
    for review and golden tests."""
    import pyomo.environ  # noqa: F401  (registers the LP writer)

    model.write(path, io_options={"symbolic_solver_labels": True})
