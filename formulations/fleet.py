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

    (flow)     sum_{c: i_c = 0} x_c = 1                          ``add_flow``: flow_source
               sum_{c: j_c = v} x_c = sum_{c: i_c = v} x_c        v = 1..M-1, flow_balance[v]
               (so the chosen arcs form one path 0 -> M: every key served exactly once)
    (pools)    sum_c x_c <= K                                    ``add_pools``: max_pools
    (stock)    sum_{c: g_c = g} G_c x_c <= S_g                    ``add_stock``: stock[g], types with S_g
    (power)    sum_c P_c x_c <= cap_w                             ``add_power``: power_cap, when capped

Mixed pools (``pools.split_grid`` = m > 1) are the variant ``formulations.fleet_mixed``:
the same families on arc variables z, and a split row per arc.

Objectives (fixed demand):

    max_tokens_per_joule   max  sum T_c x_c / sum E_c x_c
                           = min sum E_c x_c when every plan credits the same tokens
                           (max_P T(P) = min_P T(P) over paths P of <= K arcs, each arc at
                           its largest / smallest T_c / f_c); otherwise (paper mode's
                           sub-CDFs, the paper's compress-and-route) Dinkelbach: q_0 = ratio
                           of the least-energy plan, solve max sum (T_c - q_k E_c) x_c,
                           q_{k+1} = ratio of its solution, stop when the optimum is <= 0
                           (within 1e-9 T); bound q + max(F_ub, 0) / E_lb (``fleetopt.solver.dinkelbach``).
    min_cost               min  sum $_c x_c
    max_throughput         (``fleetopt.solver``) the largest demand scale s for which the
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

Elimination (``fleetopt.solver.bounds``, exact): given a feasible plan of weight U, a column whose
path lower bound exceeds U lies on no better plan and is dropped before the MILP.  The path
bound relaxes K, stock and cap:

    LB_c = pre(i_c) + w_c + (1 - f_c) l_a + suf(j_c),   l_a = min_{c' on a} w_{c'} / f_{c'},

pre / suf the cheapest paths to i_c / from j_c with arcs priced at l_a.  Its Lagrangian
version prices the relaxed rows with multipliers mu >= 0 (the duals of the LP relaxation):
every plan within stock and cap has sum w x >= sum w' x - k with w'_c = w_c + mu_{g_c} G_c
+ mu_P P_c and k = sum_g mu_g S_g + mu_P cap, so LB'_c - k > U eliminates c too.
Ties (lexicographic, ``fleetopt.solver.milp``): after the optimum z* is found, a second solve
adds the row sum w_c x_c <= z* (1 + mip_gap) and minimises the number of pools, then GPUs,
so among plans equal within the proven gap the simplest wins; columns are ordered by (arc, config) and HiGHS
runs with fixed threads and seed, so the choice is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from formulations.highs import Row, build_model, lp_relaxation

PathArc = tuple[int, int, int]
"""(variable, tail node i, head node j): a variable carrying the path over arc (i, j)."""


@dataclass
class FleetModelData:
    """Column data handed to the model (arrays of one entry per column)."""

    n_nodes: int
    """M + 1: the boundary nodes 0..M."""
    arc_i: np.ndarray
    arc_j: np.ndarray
    gpu_type: list[str]
    gpus: np.ndarray
    max_pools: int
    stock: dict[str, int]
    """GPU type -> inventory limit S_g."""
    provisioned_w: np.ndarray
    cap_w: float | None
    budget: tuple[np.ndarray, float] | None = None
    """(w, z): the row sum w_c x_c <= z, for the lexicographic tie-break stage."""
    frac: np.ndarray | None = None
    """Per column, its share f_c of the arc's traffic; None (or all 1) = no mixed pools."""

    @property
    def mixed(self) -> bool:
        """Whether some column takes less than its whole arc (``formulations.fleet_mixed``)."""
        return self.frac is not None and bool(np.any(self.frac < 1.0))

    def arcs(self) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The distinct arcs (sorted) and each column's arc index."""
        keys = sorted({(int(i), int(j)) for i, j in zip(self.arc_i, self.arc_j)})
        pos = {a: k for k, a in enumerate(keys)}
        return keys, np.array([pos[(int(i), int(j))] for i, j in zip(self.arc_i, self.arc_j)], int)

    def n_vars(self) -> int:
        """x_c for every column, then z_a for every arc when mixed pools are on."""
        return len(self.arc_i) + (len(self.arcs()[0]) if self.mixed else 0)


def column_path(data: FleetModelData) -> list[PathArc]:
    """The path carried by the columns themselves: x_c over arc (i_c, j_c)."""
    return [(c, int(i), int(j)) for c, (i, j) in enumerate(zip(data.arc_i, data.arc_j))]


def add_flow(data: FleetModelData, path: Sequence[PathArc]) -> list[Row]:
    """One unit of flow from node 0 to node M over the path variables p:

        flow_source:      sum_{p: i_p = 0} p = 1
        flow_balance[v]:  sum_{p: j_p = v} p - sum_{p: i_p = v} p = 0       v = 1..M-1

    so the chosen arcs form one path 0 -> M: every routing key is served exactly once."""
    return flow_rows(data.n_nodes, path)


def flow_rows(n_nodes: int, path: Sequence[PathArc]) -> list[Row]:
    """The rows of ``add_flow`` over nodes 0..n_nodes-1 for any path variables (the
    disaggregated variant passes its aggregated columns and split-arc variables)."""
    out_of: dict[int, list[int]] = {v: [] for v in range(n_nodes)}
    into: dict[int, list[int]] = {v: [] for v in range(n_nodes)}
    for var, i, j in path:
        out_of[i].append(var)
        into[j].append(var)
    rows = [Row("flow_source", None, out_of[0], [1.0] * len(out_of[0]), 1.0, 1.0)]
    for v in range(1, n_nodes - 1):
        if into[v] or out_of[v]:
            rows.append(Row("flow_balance", v, into[v] + out_of[v], [1.0] * len(into[v]) + [-1.0] * len(out_of[v]),
                            0.0, 0.0))
    return rows


def add_pools(data: FleetModelData, path: Sequence[PathArc]) -> list[Row]:
    """At most K pools (length ranges) on the path:

        max_pools:  sum_p p <= K"""
    tails = [var for var, _, _ in path]
    return [Row("max_pools", None, tails, [1.0] * len(tails), -math.inf, float(data.max_pools))]


def add_stock(data: FleetModelData) -> list[Row]:
    """Every GPU type with an inventory S_g:

        stock[g]:  sum_{c: g_c = g} G_c x_c <= S_g"""
    n = len(data.arc_i)
    rows = []
    for g, limit in sorted(data.stock.items()):
        cs = [c for c in range(n) if data.gpu_type[c] == g]
        if cs:
            rows.append(Row("stock", g, cs, [float(data.gpus[c]) for c in cs], -math.inf, float(limit)))
    return rows


def add_power(data: FleetModelData) -> list[Row]:
    """The facility cap, on the provisioning basis (P_c already x PUE), when the site has one:

        power_cap:  sum_c P_c x_c <= cap_w"""
    if data.cap_w is None:
        return []
    n = len(data.arc_i)
    return [Row("power_cap", None, list(range(n)), [float(x) for x in data.provisioned_w], -math.inf,
                float(data.cap_w))]


def add_budget(data: FleetModelData) -> list[Row]:
    """The tie-break stage keeps the plans within the proven gap of the optimum z*:

        budget:  sum_c w_c x_c <= z* (1 + mip_gap)"""
    if data.budget is None:
        return []
    w, z = data.budget
    return [Row("budget", None, list(range(len(data.arc_i))), [float(x) for x in w], -math.inf, float(z))]


def constraint_rows(data: FleetModelData) -> list[Row]:
    """Every row once, family by family, the path on the columns (no mixed pools: see
    ``formulations.fleet_mixed``); the single definition both transports read."""
    path = column_path(data)
    return [*add_flow(data, path), *add_pools(data, path), *add_stock(data), *add_power(data), *add_budget(data)]


def variables(data: FleetModelData) -> list[tuple[str, int]]:
    """The variable blocks: x, one per column."""
    return [("x", len(data.arc_i))]


def start_values(data: FleetModelData, chosen: Sequence[int]) -> np.ndarray:
    """A plan's columns as a full 0/1 vector of the model's variables."""
    x0 = np.zeros(data.n_vars())
    x0[list(chosen)] = 1.0
    return x0


def build(data: FleetModelData, weights: np.ndarray, sense: str = "min") -> Any:
    """The Pyomo model: ``constraint_rows`` as named components (an LP file written with
    symbolic labels reads like the statement above), objective sum w_c x_c."""
    return build_model("fleet", constraint_rows(data), variables(data), weights, sense)


@dataclass
class LpRelaxation:
    """The LP relaxation of min sum w_c x_c: its optimum (None unless solved to optimality)
    and non-negative multipliers of the (stock) rows, per GPU type, and of the (power) row."""

    value: float | None
    mu_stock: dict[str, float]
    mu_power: float


def lagrange_multipliers(data: FleetModelData, rows: Sequence[Row], weights: np.ndarray,
                         threads: int = 1) -> LpRelaxation:
    r"""The LP relaxation (x, z in [0, 1]) of min sum w_c x_c (weights >= 0) over ``rows``
    (``constraint_rows`` of the variant), its value and the duals of the (stock) and (power)
    rows as multipliers mu >= 0.  Any mu >= 0 gives a valid Lagrangian bound
    (``fleetopt.solver.bounds``): for every plan x within stock and cap,

        sum_c w_c x_c >= sum_c (w_c + mu_{g_c} G_c + mu_P P_c) x_c - sum_g mu_g S_g - mu_P cap_w

    and the LP duals make the right-hand side largest at the LP optimum.  Multipliers are 0
    when the LP is not solved to optimality."""
    lp = lp_relaxation(rows, data.n_vars(), weights, threads)
    stock = {g: 0.0 for g in data.stock}
    if lp.value is None:
        return LpRelaxation(None, stock, 0.0)
    power = 0.0
    for k, r in enumerate(rows):
        mu = max(0.0, -float(lp.row_dual[k]))     # a <= row of a min problem: HiGHS reports dual <= 0
        if r.family == "stock":
            stock[str(r.key)] = mu
        elif r.family == "power_cap":
            power = mu
    return LpRelaxation(lp.value, stock, power)
