r"""Bounds on the fleet MILP from the path structure of its columns (no solver needed).

Notation as in ``formulations/fleet.py``: columns c on arcs (i_c, j_c) of the boundary DAG
0..M, share f_c of their arc, weight w_c >= 0 (the objective term), GPUs G_c of type g_c,
provisioned power P_c; a plan covers every arc of a path 0 -> M with shares summing to 1.

* ``best_path``: the least weight of a path of at most K arcs (one column per arc), a DP.
* ``can_reach``: which columns can lie on a plan of weight <= a limit (exact elimination),
  from the path lower bound below, optionally with Lagrangian multipliers on the stock and
  power rows.
* ``one_pool_plan``: the best feasible plan of one pool, an upper bound.
* ``tokens_vary``: whether plans can credit different tokens/s (then tokens per joule is a
  ratio to maximise, not an energy to minimise).
"""

from __future__ import annotations

import math

import numpy as np

from fleetopt.columns import Columns


def best_path(cols: Columns, weight: np.ndarray, max_pools: int) -> float:
    """Least total weight of a path 0 -> M with at most max_pools arcs, one column per arc
    (DP over the DAG; inf when no path exists):

        d_0(0) = 0,  d_{k+1}(j) = min_{c: j_c = j} d_k(i_c) + weight_c,  result min_{k <= K} d_k(M)."""
    m = len(cols.bounds)
    cur = np.full(m + 1, math.inf)
    cur[0] = 0.0
    out = math.inf
    for _ in range(max_pools):
        nxt = np.full(m + 1, math.inf)
        np.minimum.at(nxt, cols.arc_j, cur[cols.arc_i] + weight)
        out = min(out, nxt[m])
        cur = nxt
    return out


def path_bounds(cols: Columns, w: np.ndarray) -> np.ndarray:
    r"""Per column c, a lower bound on the weight of every plan that uses c (K, stock and
    cap relaxed):

        LB_c = pre(i_c) + w_c + (1 - f_c) l_{a(c)} + suf(j_c),   l_a = min_{c' on a} w_{c'} / f_{c'}

    where pre(v) (suf(v)) is the cheapest path 0 -> v (v -> M) with every arc priced at
    l_a, its least weight per unit of share: any cover of an arc (shares summing to 1)
    weighs at least l_a, and c leaves 1 - f_c of its arc to other columns.  Valid for
    weights of any sign (a DP over a DAG)."""
    m = len(cols.bounds)
    f = cols.frac
    arc = cols.arc_i * (m + 1) + cols.arc_j
    keys, inv = np.unique(arc, return_inverse=True)
    lb = np.full(len(keys), math.inf)
    np.minimum.at(lb, inv, w / f)
    ai, aj = keys // (m + 1), keys % (m + 1)
    pre, suf = np.full(m + 1, math.inf), np.full(m + 1, math.inf)
    pre[0], suf[m] = 0.0, 0.0
    for k in np.argsort(aj, kind="stable"):              # tails before heads: i < j
        pre[aj[k]] = min(pre[aj[k]], pre[ai[k]] + lb[k])
    for k in np.argsort(-ai, kind="stable"):
        suf[ai[k]] = min(suf[ai[k]], suf[aj[k]] + lb[k])
    return pre[cols.arc_i] + w + (1.0 - f) * lb[inv] + suf[cols.arc_j]


def lagrangian_weights(cols: Columns, w: np.ndarray, stock: dict[str, int], cap_w: float | None,
                       mu_stock: dict[str, float], mu_power: float) -> tuple[np.ndarray, float]:
    r"""The weights and constant of the Lagrangian relaxation of the (stock) and (power)
    rows with multipliers mu >= 0:

        w'_c = w_c + mu_{g_c} G_c + mu_P P_c,    k = sum_g mu_g S_g + mu_P cap_w

    so that every plan x within stock and cap has sum w x >= sum w' x - k."""
    wl = np.asarray(w, float).copy()
    k = 0.0
    gpu_of = np.array([cols.configs[c].gpu for c in range(len(cols.configs))], dtype=object)
    types = gpu_of[cols.cfg] if len(cols) else np.zeros(0, dtype=object)
    for g, limit in stock.items():
        mu = max(0.0, mu_stock.get(g, 0.0))
        if mu > 0:
            wl += np.where(types == g, mu * cols.gpus, 0.0)
            k += mu * limit
    if cap_w is not None and mu_power > 0:
        wl += mu_power * cols.provisioned_w
        k += mu_power * cap_w
    return wl, k


def can_reach(cols: Columns, w: np.ndarray, limit: float, lagrangian: tuple[np.ndarray, float] | None = None
              ) -> np.ndarray:
    r"""Columns that can lie on a plan of total weight <= limit: LB_c <= limit (``path_bounds``)
    and, with ``lagrangian`` = (w', k) from ``lagrangian_weights``, LB'_c - k <= limit too
    (LB' the path bound under w').  Exact elimination: a column failing either is in no
    plan of weight <= limit that meets stock and cap.  A relative tolerance of 1e-9 keeps
    the plan that set the limit."""
    tol = limit + 1e-9 * abs(limit)
    keep = path_bounds(cols, w) <= tol
    if lagrangian is not None:
        wl, k = lagrangian
        keep &= path_bounds(cols, wl) - k <= tol
    return keep


def one_pool_plan(cols: Columns, w: np.ndarray, stock: dict[str, int], cap_w: float | None
                  ) -> tuple[float, list[int]]:
    """The weight and column of the best feasible one-pool plan (one config over the whole
    range, within its stock and the cap): an upper bound on the optimum; (inf, []) when
    none is feasible."""
    m = len(cols.bounds)
    ok = (cols.arc_i == 0) & (cols.arc_j == m) & (cols.frac == 1.0)
    if cap_w is not None:
        ok &= cols.provisioned_w <= cap_w
    for c, cf in enumerate(cols.configs):
        if cf.gpu in stock:
            ok &= ~((cols.cfg == c) & (cols.gpus > stock[cf.gpu]))
    if not ok.any():
        return math.inf, []
    idx = np.flatnonzero(ok)
    best = int(idx[np.argmin(w[idx])])
    return float(w[best]), [best]


def tokens_vary(cols: Columns, max_pools: int, rel: float = 1e-9) -> bool:
    r"""Whether two plans can credit different tokens/s: the most and the least credited
    over paths of at most K arcs, each arc at the largest (smallest) T_c / f_c of its
    columns, differ by more than ``rel``.  False means every plan credits the same tokens
    (then max tokens per joule = min energy); stock and cap are relaxed, so True may be
    conservative (the ratio objective is then exact all the same)."""
    if not len(cols):
        return False
    per_share = cols.tokens_s / cols.frac
    lo = best_path(cols, per_share, max_pools)
    hi = -best_path(cols, -per_share, max_pools)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    return hi - lo > rel * max(abs(hi), 1e-12)
