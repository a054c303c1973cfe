r"""The fleet MILP with disaggregated (prefill/decode split) pools as a per-range choice.

Mathematics
-----------
As in ``formulations.fleet``: candidate boundaries 0 = b_0 < ... < b_M, nodes 0..M, an arc
a = (i, j) serves routing keys in (b_i, b_j].  Three kinds of column, each sized exactly by
the sizing layer (``fleetopt.sizing`` for aggregated pools, ``fleetopt.disagg`` for the two
phases of a split pool):

    aggregated  c in C     arc a(c), GPU type g_c, GPUs G_c, energy E_c, provisioned P_c
    prefill     p in P     arc a(p), type g_p, G_p, E_p (its KV transfer's power included),
                           P_p, and a transfer width w_p: the lanes its TTFT was sized with
    decode      d in D     arc a(d), type g_d, G_d, E_d, P_d, and h_d GPUs per instance

A prefill column is sized for every width its transfer can get, w_p in {h_d < H_p} u {H_p}
(H_p its own GPUs per instance): a transfer uses min(H_p, h_d) lanes.  Variables, all
binary: x_c (aggregated column chosen), u_p, v_d (phase columns chosen), y_a (arc a served
by a split pool; only arcs with both phases' columns):

    (flow)      sum_{c: i_c = 0} x_c + sum_{a: i_a = 0} y_a = 1
                sum_{into v} (x_c + y_a) = sum_{out of v} (x_c + y_a)      v = 1..M-1
    (prefill)   sum_{p: a(p) = a} u_p = y_a                                 every split arc a
    (decode)    sum_{d: a(d) = a} v_d = y_a
    (width)     sum_{p: a(p) = a, w_p >= t} u_p <= sum_{d: a(d) = a, h_d >= t} v_d
                                                                 every split arc a, width t
    (sametype)  sum_{p: a(p) = a, g_p = g} u_p = sum_{d: a(d) = a, g_d = g} v_d
                                     every split arc a and type g, when the link needs it
    (pools)     sum_c x_c + sum_a y_a <= K
    (stock)     sum_{c: g_c = g} G_c x_c + sum_{p: g_p = g} G_p u_p + sum_{d: g_d = g} G_d v_d <= S_g
    (power)     sum_c P_c x_c + sum_p P_p u_p + sum_d P_d v_d <= cap_w
    objective   min sum_c E_c x_c + sum_p E_p u_p + sum_d E_d v_d   (or $ for min_cost)

Exactness: on a split arc exactly one prefill and one decode column are chosen; (width)
for every t holds iff w_p <= h_d, so the chosen pair's transfer width is feasible (w_p <=
min(H_p, h_d)), and since a wider transfer never needs more prefill instances, an optimum
takes w_p = min(H_p, h_d), the width ``fleetopt evaluate`` uses.  The model is therefore the
path MILP of ``formulations.fleet`` over the union of aggregated columns and every (prefill
config, decode config) pair per arc, priced pair by pair, without enumerating the pairs:
(P + D) columns per arc instead of P x D.  With (pools), (stock), (power) dropped it is a
network flow with, per split arc, an assignment of one prefill and one decode column.

Ties: ``fleetopt.disagg_solve`` re-solves among plans within the proven gap with weights 1
per aggregated column and 1 per phase column (a split range counts as two pools), plus a
fraction per GPU, so an aggregated pool is kept over an equally good split one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from formulations.fleet import SolveResult, _new_highs

FAMILIES = ("flow", "prefill", "decode", "width", "sametype", "pools", "stock", "power", "budget")


@dataclass
class Kind:
    """Columns of one kind (arrays, one entry per column)."""

    arc_i: np.ndarray
    arc_j: np.ndarray
    gpu_type: list[str]
    gpus: np.ndarray
    provisioned_w: np.ndarray
    width: np.ndarray | None = None
    """Prefill: the transfer width w_p; decode: GPUs per instance h_d; aggregated: None."""

    def __len__(self) -> int:
        return len(self.arc_i)

    @classmethod
    def empty(cls) -> "Kind":
        z = np.zeros(0, int)
        return cls(z, z, [], z, np.zeros(0), z)


@dataclass
class DisaggModelData:
    """Column data of the three kinds; variables are x (aggregated), u (prefill), v
    (decode), then y (one per split arc), in that order."""

    n_nodes: int
    agg: Kind
    pre: Kind
    dec: Kind
    max_pools: int
    stock: dict[str, int]
    cap_w: float | None
    same_type: bool = False
    budget: tuple[np.ndarray, float] | None = None
    """(w over x, u, v; z): the row sum w x <= z of the tie-break stage."""
    _split: list[tuple[int, int]] | None = field(default=None, repr=False)

    @property
    def n_cols(self) -> int:
        return len(self.agg) + len(self.pre) + len(self.dec)

    def split_arcs(self) -> list[tuple[int, int]]:
        """Arcs with both a prefill and a decode column (sorted): the y variables."""
        if self._split is None:
            pa = {(int(i), int(j)) for i, j in zip(self.pre.arc_i, self.pre.arc_j)}
            da = {(int(i), int(j)) for i, j in zip(self.dec.arc_i, self.dec.arc_j)}
            self._split = sorted(pa & da)
        return self._split

    def n_vars(self) -> int:
        return self.n_cols + len(self.split_arcs())


Row = tuple[str, list[int], list[float], float, float]
"""(family, variable indices, coefficients, lower, upper)."""


@dataclass
class _Index:
    """Variable positions: x (aggregated) from 0, u (prefill) from ``u``, v (decode) from
    ``v``, y (split arcs) from ``y``; the prefill and decode columns on each split arc."""

    u: int
    v: int
    y_of: dict[tuple[int, int], int]
    pre_on: dict[tuple[int, int], list[int]]
    dec_on: dict[tuple[int, int], list[int]]

    @classmethod
    def of(cls, data: DisaggModelData) -> "_Index":
        na, npre = len(data.agg), len(data.pre)
        split = data.split_arcs()
        pre_on: dict = {a: [] for a in split}
        dec_on: dict = {a: [] for a in split}
        for p, a in enumerate(zip(data.pre.arc_i.tolist(), data.pre.arc_j.tolist())):
            if a in pre_on:
                pre_on[a].append(p)
        for d, a in enumerate(zip(data.dec.arc_i.tolist(), data.dec.arc_j.tolist())):
            if a in dec_on:
                dec_on[a].append(d)
        return cls(na, na + npre, {a: data.n_cols + k for k, a in enumerate(split)}, pre_on, dec_on)


def add_flow(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{out of 0} (x + y) = 1; sum_{into v} (x + y) = sum_{out of v} (x + y), v = 1..M-1."""
    out_of: dict = {v: [] for v in range(data.n_nodes)}
    into: dict = {v: [] for v in range(data.n_nodes)}
    for c, (i, j) in enumerate(zip(data.agg.arc_i, data.agg.arc_j)):
        out_of[int(i)].append(c)
        into[int(j)].append(c)
    for (i, j), y in ix.y_of.items():
        out_of[i].append(y)
        into[j].append(y)
    rows = [("flow", out_of[0], [1.0] * len(out_of[0]), 1.0, 1.0)]
    for v in range(1, data.n_nodes - 1):
        if into[v] or out_of[v]:
            rows.append(("flow", into[v] + out_of[v], [1.0] * len(into[v]) + [-1.0] * len(out_of[v]), 0.0, 0.0))
    return rows


def add_phases(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{p on a} u_p = y_a and sum_{d on a} v_d = y_a on every split arc a."""
    rows = []
    for a, y in ix.y_of.items():
        ps, ds = ix.pre_on[a], ix.dec_on[a]
        rows.append(("prefill", [ix.u + p for p in ps] + [y], [1.0] * len(ps) + [-1.0], 0.0, 0.0))
        rows.append(("decode", [ix.v + d for d in ds] + [y], [1.0] * len(ds) + [-1.0], 0.0, 0.0))
    return rows


def add_width(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{p on a, w_p >= t} u_p <= sum_{d on a, h_d >= t} v_d for every split arc a and
    every width t on it above the least (which every decode column has)."""
    rows = []
    for a in ix.y_of:
        ps, ds = ix.pre_on[a], ix.dec_on[a]
        for t in sorted({int(data.pre.width[p]) for p in ps})[1:]:
            lhs = [ix.u + p for p in ps if data.pre.width[p] >= t]
            rhs = [ix.v + d for d in ds if data.dec.width[d] >= t]
            rows.append(("width", lhs + rhs, [1.0] * len(lhs) + [-1.0] * len(rhs), -math.inf, 0.0))
    return rows


def add_same_type(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{p on a, g_p = g} u_p = sum_{d on a, g_d = g} v_d for every split arc a and type g
    (only when the link needs both phases on one GPU type)."""
    if not data.same_type:
        return []
    rows = []
    for a in ix.y_of:
        ps, ds = ix.pre_on[a], ix.dec_on[a]
        for g in sorted({data.pre.gpu_type[p] for p in ps} | {data.dec.gpu_type[d] for d in ds}):
            lhs = [ix.u + p for p in ps if data.pre.gpu_type[p] == g]
            rhs = [ix.v + d for d in ds if data.dec.gpu_type[d] == g]
            rows.append(("sametype", lhs + rhs, [1.0] * len(lhs) + [-1.0] * len(rhs), 0.0, 0.0))
    return rows


def add_pools(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_c x_c + sum_a y_a <= K (a split range is one range)."""
    ranges = list(range(len(data.agg))) + list(ix.y_of.values())
    return [("pools", ranges, [1.0] * len(ranges), -math.inf, float(data.max_pools))]


def add_stock(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{g_c = g} G_c x_c + sum_{g_p = g} G_p u_p + sum_{g_d = g} G_d v_d <= S_g per limited type g."""
    rows = []
    for g, limit in sorted(data.stock.items()):
        idx, coef = [], []
        for kind, off in ((data.agg, 0), (data.pre, ix.u), (data.dec, ix.v)):
            for c in range(len(kind)):
                if kind.gpu_type[c] == g:
                    idx.append(off + c)
                    coef.append(float(kind.gpus[c]))
        if idx:
            rows.append(("stock", idx, coef, -math.inf, float(limit)))
    return rows


def add_power(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_c P_c x_c + sum_p P_p u_p + sum_d P_d v_d <= cap_w, when the site has a cap."""
    if data.cap_w is None:
        return []
    prov = np.concatenate([data.agg.provisioned_w, data.pre.provisioned_w, data.dec.provisioned_w])
    return [("power", list(range(data.n_cols)), [float(x) for x in prov], -math.inf, float(data.cap_w))]


def add_budget(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum w x <= z over x, u, v: the tie-break stage keeps plans within the proven gap."""
    if data.budget is None:
        return []
    w, z = data.budget
    return [("budget", list(range(data.n_cols)), [float(x) for x in w], -math.inf, float(z))]


def constraint_rows(data: DisaggModelData) -> list[Row]:
    """Every row once, family by family (the single definition both transports read)."""
    ix = _Index.of(data)
    return [r for add in (add_flow, add_phases, add_width, add_same_type, add_pools, add_stock, add_power, add_budget)
            for r in add(data, ix)]


def build(data: DisaggModelData, weights: np.ndarray, sense: str = "min"):
    """The Pyomo model (one named ConstraintList per family) with objective sum w x over
    the x, u, v variables; for review (``write_lp``) and the ``pyomo`` interface."""
    import pyomo.core as pc

    m = pc.ConcreteModel(name="fleet_disagg")
    m.V = pc.Set(initialize=range(data.n_vars()), ordered=True)
    m.x = pc.Var(m.V, domain=pc.Binary)
    for fam in FAMILIES:
        setattr(m, fam, pc.ConstraintList())
    for fam, idx, coef, lo, up in constraint_rows(data):
        expr = sum(a * m.x[c] for c, a in zip(idx, coef))
        getattr(m, fam).add(expr == lo if lo == up else expr <= up)
    m.obj = pc.Objective(expr=sum(float(weights[c]) * m.x[c] for c in range(len(weights))),
                         sense=pc.minimize if sense == "min" else pc.maximize)
    return m


def solve_pyomo(data: DisaggModelData, weights: np.ndarray, sense: str, time_limit_s: float, mip_gap: float,
                threads: int, seed: int, verbose: bool = False, presolve: bool = False) -> SolveResult:
    """``build`` solved through pyomo.contrib.solver.solvers.highs.Highs (the same rows as
    ``solve_direct``); ``chosen`` indexes x, u, v."""
    from pyomo.contrib.solver.common.results import TerminationCondition as TC
    from pyomo.contrib.solver.solvers.highs import Highs

    m = build(data, weights, sense)
    t0 = time.perf_counter()
    res = Highs().solve(m, load_solutions=False, raise_exception_on_nonoptimal_result=False, tee=verbose,
                        time_limit=time_limit_s, rel_gap=mip_gap, threads=threads,
                        solver_options={"random_seed": seed, "mip_abs_gap": 0.0,
                                        "presolve": "on" if presolve else "off"})
    secs = time.perf_counter() - t0
    tc = res.termination_condition
    nv, ncon = data.n_vars(), sum(len(getattr(m, f)) for f in FAMILIES)
    if tc in (TC.provenInfeasible, TC.infeasibleOrUnbounded, TC.locallyInfeasible):
        return SolveResult("infeasible", [], None, None, None, secs, nv, ncon)
    if res.incumbent_objective is None:
        return SolveResult("time_limit" if tc == TC.maxTimeLimit else "infeasible", [], None, None, None, secs, nv,
                           ncon)
    res.solution_loader.load_vars()
    chosen = [c for c in range(data.n_cols) if m.x[c].value is not None and m.x[c].value > 0.5]
    obj, bound = float(res.incumbent_objective), res.objective_bound
    bound = float(bound) if bound is not None and math.isfinite(bound) else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-12)
    return SolveResult("optimal" if tc == TC.convergenceCriteriaSatisfied else "time_limit", chosen, obj, bound, gap,
                       secs, nv, ncon)


def solve_direct(data: DisaggModelData, weights: np.ndarray, sense: str, time_limit_s: float, mip_gap: float,
                 threads: int, seed: int, verbose: bool = False, presolve: bool = False,
                 start: list[int] | None = None) -> SolveResult:
    """The rows passed to HiGHS as a matrix through highspy; ``weights`` over x, u, v;
    ``chosen`` indexes x, u, v in that order (y is implied)."""
    import highspy

    rows = constraint_rows(data)
    n = data.n_vars()
    cost = np.concatenate([np.asarray(weights, float), np.zeros(n - data.n_cols)])
    h = _new_highs(highspy, verbose)
    for k, v in (("output_flag", bool(verbose)), ("log_to_console", bool(verbose)), ("time_limit", float(time_limit_s)),
                 ("mip_rel_gap", float(mip_gap)), ("mip_abs_gap", 0.0), ("threads", int(threads)),
                 ("random_seed", int(seed)), ("presolve", "on" if presolve else "off")):
        h.setOptionValue(k, v)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, len(rows)
    lp.col_cost_ = cost * (1.0 if sense == "min" else -1.0)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lo = np.array([r[3] for r in rows])
    up = np.array([r[4] for r in rows])
    lp.row_lower_ = np.where(np.isfinite(lo), lo, -highspy.kHighsInf)
    lp.row_upper_ = np.where(np.isfinite(up), up, highspy.kHighsInf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.concatenate(([0], np.cumsum([len(r[1]) for r in rows]))).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([np.asarray(r[1], np.int32) for r in rows])
    lp.a_matrix_.value_ = np.concatenate([np.asarray(r[2], float) for r in rows])
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    t0 = time.perf_counter()
    h.passModel(lp)
    if start:
        x0 = np.zeros(n)
        x0[start] = 1.0
        x0[data.n_cols:] = implied_y(data, start)
        sol = highspy.HighsSolution()
        sol.col_value = x0.tolist()
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    secs = time.perf_counter() - t0
    st, info = h.getModelStatus(), h.getInfo()
    M = highspy.HighsModelStatus
    if st in (M.kInfeasible, M.kUnboundedOrInfeasible):
        return SolveResult("infeasible", [], None, None, None, secs, n, len(rows))
    if info.primal_solution_status != 2:
        return SolveResult("time_limit" if st == M.kTimeLimit else "infeasible", [], None, None, None, secs, n,
                           len(rows))
    x = np.asarray(h.getSolution().col_value)[:data.n_cols]
    chosen = [int(c) for c in np.flatnonzero(x > 0.5)]
    sign = 1.0 if sense == "min" else -1.0
    obj = sign * float(info.objective_function_value)
    bound = sign * float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else obj
    gap = abs(obj - bound) / max(abs(obj), 1e-12)
    return SolveResult("optimal" if st == M.kOptimal else "time_limit", chosen, obj, bound, gap, secs, n, len(rows))


def implied_y(data: DisaggModelData, chosen: list[int]) -> np.ndarray:
    """The y values a choice of x, u, v columns implies (1 on the arcs of its prefill columns)."""
    na = len(data.agg)
    on = {(int(data.pre.arc_i[c - na]), int(data.pre.arc_j[c - na])) for c in chosen if na <= c < na + len(data.pre)}
    return np.array([1.0 if a in on else 0.0 for a in data.split_arcs()])


def write_lp(model, path: str) -> None:
    from formulations.fleet import write_lp as fleet_write_lp

    fleet_write_lp(model, path)
