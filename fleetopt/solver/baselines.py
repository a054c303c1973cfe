"""A solved plan's topology from its columns, the baselines it is compared with, and the gains.

Baselines are read from the same columns as the plan: ``homogeneous`` is the best single
config on one pool of the largest window; ``two_pool_paper`` is the best single config on
the instance's ``paper_boundary`` split.  Each is evaluated by ``fleetopt.evaluation`` (pools
read back from the columns when the traffic is the same), so baselines and plans agree.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.columns import Columns
from fleetopt.evaluation import SizedReader, evaluate
from fleetopt.plan import Plan
from fleetopt.problem import Problem
from fleetopt.sizing import PoolSizing
from fleetopt.topology import PoolChoice

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile
    from fleetopt.profiles.point import Admission


def chosen_topology(cols: Columns, chosen: list[int], merge_empty: bool = True) -> list[PoolChoice]:
    """The chosen columns as a topology: by arc, the members of a mixed pool in config order."""
    chosen = sorted(chosen, key=lambda c: (cols.arc_i[c], cols.cfg[c], -cols.frac[c]))
    ranges: list[tuple[int, list[PoolChoice]]] = []    # (instances, members) per arc
    for c in chosen:
        cf = cols.configs[cols.cfg[c]]
        up = cols.bounds[cols.arc_j[c] - 1]
        member = PoolChoice(up, cf.gpu, cf.tp, cf.admission, share=float(cols.frac[c]))
        if ranges and ranges[-1][1][0].upper == up:
            ranges[-1] = (ranges[-1][0] + int(cols.instances[c]), ranges[-1][1] + [member])
        else:
            ranges.append((int(cols.instances[c]), [member]))
    if merge_empty and len(ranges) > 1:   # a range with no traffic joins the next one (nothing moves)
        kept = [r for r in ranges[:-1] if r[0] > 0] + [ranges[-1]]
        if ranges[-1][0] == 0 and len(kept) > 1:
            last = kept.pop()
            kept[-1] = (kept[-1][0], [dataclasses.replace(p, upper=last[1][0].upper) for p in kept[-1][1]])
        ranges = kept
    return [p for _, members in ranges for p in members]


def column_reader(problem: Problem, cols: Columns) -> SizedReader | None:
    """``evaluate``'s ``sized``: reads a pool from the columns (same code, same traffic)
    instead of sizing it again.  Not with compress-and-route, where a column's traffic
    assumes the pool above covers (B, gamma B] and ``evaluate`` routes the real plan."""
    if problem.pools.compress is not None:
        return None
    node = {b: k + 1 for k, b in enumerate(cols.bounds)}
    node[0] = 0
    cfg = {(c.gpu, c.tp, c.admission): k for k, c in enumerate(cols.configs)}

    def read(lo: float, hi: int, gpu: str, tp: int, admission: Admission, share: float = 1.0
             ) -> tuple[PoolSizing, Profile] | None:
        i, j, c = node.get(int(lo)), node.get(int(hi)), cfg.get((gpu, tp, admission))
        k = round(share * cols.grid)
        if i is None or j is None or c is None or abs(k - share * cols.grid) > 1e-9:
            return None
        return cols.pool_sizing(i, j, c, k)
    return read


def baseline(problem: Problem, cols: Columns, uppers_idx: list[int],
             rate: float | None = None) -> dict[str, Any] | None:
    """Best single config on a fixed boundary set (indices into nodes), by the objective,
    evaluated: the brief of its plan (``brief``), None when no config fits."""
    read = column_reader(problem, cols)
    cols = cols.whole()
    arcs = list(zip([0] + uppers_idx[:-1], uppers_idx))
    best = None
    for c, cf in enumerate(cols.configs):
        sel = [np.flatnonzero((cols.arc_i == i) & (cols.arc_j == j) & (cols.cfg == c)) for i, j in arcs]
        if any(len(x) == 0 for x in sel):
            continue
        idx = [int(x[0]) for x in sel]
        prov = cols.provisioned_w[idx].sum()
        if problem.power.cap_w is not None and prov > problem.power.cap_w:
            continue
        gpus = cols.gpus[idx].sum()
        if cf.max_gpus is not None and gpus > cf.max_gpus:
            continue
        if problem.objective == "min_cost":
            key = cols.cost_h[idx].sum()
        else:
            key = -cols.tokens_s[idx].sum() / max(cols.energy_w[idx].sum(), 1e-12)
        if best is None or key < best[0]:
            best = (key, cf)
    if best is None:
        return None
    cf = best[1]
    topo = [PoolChoice(cols.bounds[j - 1], cf.gpu, cf.tp, cf.admission) for j in uppers_idx]
    return brief(evaluate(problem, topo, rate=rate, sized=read))


def brief(plan: Plan | None) -> dict[str, Any] | None:
    """A baseline as plans report it: its topology and fleet totals."""
    if plan is None:
        return None
    return {"topology": plan.spec, **plan.fleet}


def gains(plan: Plan, base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plan against a baseline's brief: relative tokens per joule, GPUs, IT kW and cost
    per hour saved (None without a baseline)."""
    if base is None:
        return None
    f, b = plan.fleet, base
    rel = lambda a, c: (a / c - 1.0) if c else None  # noqa: E731
    return {"tokens_per_joule": rel(f["tokens_per_joule"], b["tokens_per_joule"]),
            "gpus_saved": b["gpus"] - f["gpus"], "it_power_saved_kw": b["it_power_kw"] - f["it_power_kw"],
            "cost_per_hour_saved": b["cost_per_hour"] - f["cost_per_hour"]}
