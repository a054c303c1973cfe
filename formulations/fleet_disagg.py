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

    (flow)      sum_{c: i_c = 0} x_c + sum_{a: i_a = 0} y_a = 1                 flow_source
                sum_{into v} (x_c + y_a) = sum_{out of v} (x_c + y_a)      v = 1..M-1, flow_balance[v]
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

Ties: ``fleetopt.solver.disagg`` re-solves among plans within the proven gap with weights 1
per aggregated column and 1 per phase column (a split range counts as two pools), plus a
fraction per GPU, so an aggregated pool is kept over an equally good split one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from formulations.fleet import flow_rows
from formulations.highs import Row, build_model


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
        """Number of columns of this kind."""
        return len(self.arc_i)

    @classmethod
    def empty(cls) -> Kind:
        """No columns."""
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
        """Columns of the three kinds: x, u, v."""
        return len(self.agg) + len(self.pre) + len(self.dec)

    def split_arcs(self) -> list[tuple[int, int]]:
        """Arcs with both a prefill and a decode column (sorted): the y variables."""
        if self._split is None:
            pa = {(int(i), int(j)) for i, j in zip(self.pre.arc_i, self.pre.arc_j)}
            da = {(int(i), int(j)) for i, j in zip(self.dec.arc_i, self.dec.arc_j)}
            self._split = sorted(pa & da)
        return self._split

    def n_vars(self) -> int:
        """x, u, v, then one y per split arc."""
        return self.n_cols + len(self.split_arcs())


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
    def of(cls, data: DisaggModelData) -> _Index:
        """The positions of ``data``'s variables."""
        na, npre = len(data.agg), len(data.pre)
        split = data.split_arcs()
        pre_on: dict[tuple[int, int], list[int]] = {a: [] for a in split}
        dec_on: dict[tuple[int, int], list[int]] = {a: [] for a in split}
        for p, a in enumerate(zip(data.pre.arc_i.tolist(), data.pre.arc_j.tolist())):
            if a in pre_on:
                pre_on[a].append(p)
        for d, a in enumerate(zip(data.dec.arc_i.tolist(), data.dec.arc_j.tolist())):
            if a in dec_on:
                dec_on[a].append(d)
        return cls(na, na + npre, {a: data.n_cols + k for k, a in enumerate(split)}, pre_on, dec_on)


def add_flow(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{out of 0} (x + y) = 1; sum_{into v} (x + y) = sum_{out of v} (x + y), v = 1..M-1
    (``formulations.fleet.flow_rows`` over the aggregated columns x and split-arc variables y)."""
    path = [(c, int(i), int(j)) for c, (i, j) in enumerate(zip(data.agg.arc_i, data.agg.arc_j))]
    path += [(y, i, j) for (i, j), y in ix.y_of.items()]
    return flow_rows(data.n_nodes, path)


def add_phases(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{p on a} u_p = y_a and sum_{d on a} v_d = y_a on every split arc a."""
    rows = []
    for a, y in ix.y_of.items():
        ps, ds = ix.pre_on[a], ix.dec_on[a]
        rows.append(Row("prefill", a, [ix.u + p for p in ps] + [y], [1.0] * len(ps) + [-1.0], 0.0, 0.0))
        rows.append(Row("decode", a, [ix.v + d for d in ds] + [y], [1.0] * len(ds) + [-1.0], 0.0, 0.0))
    return rows


def add_width(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_{p on a, w_p >= t} u_p <= sum_{d on a, h_d >= t} v_d for every split arc a and
    every width t on it above the least (which every decode column has)."""
    rows = []
    pre_w, dec_w = data.pre.width, data.dec.width
    assert pre_w is not None and dec_w is not None, "phase columns carry their widths"
    for a in ix.y_of:
        ps, ds = ix.pre_on[a], ix.dec_on[a]
        for t in sorted({int(pre_w[p]) for p in ps})[1:]:
            lhs = [ix.u + p for p in ps if pre_w[p] >= t]
            rhs = [ix.v + d for d in ds if dec_w[d] >= t]
            rows.append(Row("width", (*a, t), lhs + rhs, [1.0] * len(lhs) + [-1.0] * len(rhs), -math.inf, 0.0))
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
            rows.append(Row("sametype", (*a, g), lhs + rhs, [1.0] * len(lhs) + [-1.0] * len(rhs), 0.0, 0.0))
    return rows


def add_pools(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_c x_c + sum_a y_a <= K (a split range is one range)."""
    ranges = list(range(len(data.agg))) + list(ix.y_of.values())
    return [Row("max_pools", None, ranges, [1.0] * len(ranges), -math.inf, float(data.max_pools))]


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
            rows.append(Row("stock", g, idx, coef, -math.inf, float(limit)))
    return rows


def add_power(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum_c P_c x_c + sum_p P_p u_p + sum_d P_d v_d <= cap_w, when the site has a cap."""
    if data.cap_w is None:
        return []
    prov = np.concatenate([data.agg.provisioned_w, data.pre.provisioned_w, data.dec.provisioned_w])
    return [Row("power_cap", None, list(range(data.n_cols)), [float(x) for x in prov], -math.inf, float(data.cap_w))]


def add_budget(data: DisaggModelData, ix: _Index) -> list[Row]:
    """sum w x <= z over x, u, v: the tie-break stage keeps plans within the proven gap."""
    if data.budget is None:
        return []
    w, z = data.budget
    return [Row("budget", None, list(range(data.n_cols)), [float(x) for x in w], -math.inf, float(z))]


def constraint_rows(data: DisaggModelData) -> list[Row]:
    """Every row once, family by family (the single definition both transports read)."""
    ix = _Index.of(data)
    return [r for add in (add_flow, add_phases, add_width, add_same_type, add_pools, add_stock, add_power, add_budget)
            for r in add(data, ix)]


def variables(data: DisaggModelData) -> list[tuple[str, int]]:
    """The variable blocks: x (aggregated), u (prefill), v (decode), y (split arcs)."""
    return [("x", len(data.agg)), ("u", len(data.pre)), ("v", len(data.dec)), ("y", len(data.split_arcs()))]


def implied_y(data: DisaggModelData, chosen: list[int]) -> np.ndarray:
    """The y values a choice of x, u, v columns implies (1 on the arcs of its prefill columns)."""
    na = len(data.agg)
    on = {(int(data.pre.arc_i[c - na]), int(data.pre.arc_j[c - na])) for c in chosen if na <= c < na + len(data.pre)}
    return np.array([1.0 if a in on else 0.0 for a in data.split_arcs()])


def start_values(data: DisaggModelData, chosen: list[int]) -> np.ndarray:
    """A plan's columns (indices over x, u, v) as a full 0/1 vector, y implied."""
    x0 = np.zeros(data.n_vars())
    x0[chosen] = 1.0
    x0[data.n_cols:] = implied_y(data, chosen)
    return x0


def build(data: DisaggModelData, weights: np.ndarray, sense: str = "min") -> Any:
    """The Pyomo model with named components (x, u, v, y; one constraint per family), the
    objective sum w over x, u, v; for review (``formulations.highs.write_lp``) and the
    ``pyomo`` interface."""
    return build_model("fleet_disagg", constraint_rows(data), variables(data), weights, sense)
