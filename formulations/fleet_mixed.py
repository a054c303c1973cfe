r"""The fleet MILP with mixed pools (``pools.split_grid`` = m > 1): the families of
``formulations.fleet`` on arc variables, and a split row per arc.

Mixed pools (``pools.split_grid`` = m > 1): a column may also take the share f_c = k_c / m
of its arc's traffic (k_c = 1..m; sized at f_c x the arc's rate).  Arc variables
z_a in {0, 1} then carry the path, and the columns on an arc must cover it exactly:

    (flow)     as in ``formulations.fleet``, on z_a instead of x_c   ``add_flow``
    (split)    sum_{c: a(c) = a} f_c x_c = z_a      every arc a    ``add_split``: split[(i, j)]
    (pools)    sum_a z_a <= K                                    ``add_pools``
    (stock), (power) and the objective stay on x.

With m = 1 every f_c = 1 and the model is the one above (no z; the golden LP file is it).

The variables are x_c (columns 0..n-1), then z_a (one per distinct arc, in sorted order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from formulations.fleet import FleetModelData, PathArc, add_budget, add_flow, add_pools, add_power, add_stock
from formulations.highs import Row, build_model


def arc_path(data: FleetModelData) -> list[PathArc]:
    """The path carried by the arc variables: z_a (variable n + a) over each distinct arc."""
    n = len(data.arc_i)
    keys, _ = data.arcs()
    return [(n + k, i, j) for k, (i, j) in enumerate(keys)]


def add_split(data: FleetModelData) -> list[Row]:
    """The shares chosen on an arc cover it exactly when the arc is on the path:

        split[(i, j)]:  sum_{c: a(c) = (i, j)} f_c x_c - z_(i, j) = 0"""
    n = len(data.arc_i)
    keys, arc_of = data.arcs()
    assert data.frac is not None
    rows = []
    for k, a in enumerate(keys):
        cs = [int(c) for c in np.flatnonzero(arc_of == k)]
        rows.append(Row("split", a, [*cs, n + k], [float(data.frac[c]) for c in cs] + [-1.0], 0.0, 0.0))
    return rows


def constraint_rows(data: FleetModelData) -> list[Row]:
    """Every row once, family by family: flow on z, split, pools on z, stock, power, budget."""
    path = arc_path(data)
    return [*add_flow(data, path), *add_split(data), *add_pools(data, path), *add_stock(data), *add_power(data),
            *add_budget(data)]


def variables(data: FleetModelData) -> list[tuple[str, int]]:
    """The variable blocks: x (columns), then z (arcs)."""
    return [("x", len(data.arc_i)), ("z", len(data.arcs()[0]))]


def start_values(data: FleetModelData, chosen: Sequence[int]) -> np.ndarray:
    """A plan's columns as a full 0/1 vector: its x, and z = 1 on the arcs they lie on."""
    n = len(data.arc_i)
    x0 = np.zeros(data.n_vars())
    x0[list(chosen)] = 1.0
    _, arc_of = data.arcs()
    x0[n + np.unique(arc_of[list(chosen)])] = 1.0
    return x0


def build(data: FleetModelData, weights: np.ndarray, sense: str = "min") -> Any:
    """The Pyomo model with named components (``formulations.fleet.build``'s, plus z and split)."""
    return build_model("fleet_mixed", constraint_rows(data), variables(data), weights, sense)
