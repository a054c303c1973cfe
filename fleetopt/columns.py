"""Candidate pools as MILP columns.

The length range is cut at candidate boundaries 0 = b_0 < b_1 < ... < b_M (the last is the
largest window).  A *pool candidate* is an arc (i, j), i < j, of that boundary graph (routing
keys in (b_i, b_j]) together with a *config* (GPU type, TP, admission policy).  Each is sized
exactly as ``fleetopt evaluate`` sizes a pool (same routing code, same ``size_pools``), so a
plan's figures are the sums of its columns' figures.

The boundaries and configs are the problem's (``fleetopt.problem.candidate_boundaries``).
Configs are sized on the parent and forked workers (``fleetopt.forked``).

With compress-and-route, a pool of window B takes the requests with key in (B, gamma B]
from the pool above; a column stays exact only if that pool covers all of (B, gamma B], so
arcs (j, k) with k < M and b_k < gamma b_j are not generated (documented restriction).

Dominated columns are dropped before the MILP (exact): on the same arc and share, a column
that is no better on every coefficient the model uses (objective terms, provisioned power,
and GPUs when its type has an inventory limit) than another column of the same limit group.

Mixed pools (``pools.split_grid`` = m > 1): every (arc, config) is also sized at k/m of the
arc's traffic, k = 1..m - 1 (random dispatch thins a Poisson stream into Poisson streams
with the same length distribution, so each share is an exact column); the MILP picks
shares summing to one on every arc of its path.  A config may appear twice on an arc (two
separately sized groups); that is never better than one group, and the tie-break removes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.errors import FleetoptError
from fleetopt.forked import can_fork, fork_map
from fleetopt.problem import Config, Problem
from fleetopt.sizing import PoolColumns, PoolShape, PoolSizing, pool_shapes, size_shapes
from fleetopt.traffic import TrafficBatch

if TYPE_CHECKING:
    from fleetopt.instance import Compress
    from fleetopt.profiles.base import Profile


@dataclass
class Columns:
    """Every sized candidate pool, as flat arrays (one entry per column)."""

    bounds: list[int]
    configs: list[Config]
    arc_i: np.ndarray
    arc_j: np.ndarray
    cfg: np.ndarray
    instances: np.ndarray
    gpus: np.ndarray
    energy_w: np.ndarray
    """Expected IT power of the pool, W (the energy objective)."""
    provisioned_w: np.ndarray
    """Facility power the cap is checked against (the instance's provisioning basis x PUE), W."""
    tokens_s: np.ndarray
    cost_h: np.ndarray
    errors: dict[Any, str] = field(default_factory=dict)
    """Why configs or pools could not be sized: {config index or (i, j, config): message}."""
    sized: dict[tuple[int, int], tuple[PoolColumns, Profile]] = field(default_factory=dict)
    """Per config index: (its ``PoolColumns`` over every arc, its profile)."""
    arc_row: dict[tuple[int, int], int] = field(default_factory=dict)
    """(i, j) -> the arc's row in those ``PoolColumns``."""
    share_k: np.ndarray | None = None
    """Per column, k of the k/m share of its arc's traffic it takes (``pools.split_grid``
    = m; k = m for a pool of one config)."""
    grid: int = 1
    """m."""

    @property
    def frac(self) -> np.ndarray:
        """Per column, the share of its arc's traffic (1 unless mixed)."""
        return self.share_k / self.grid if self.share_k is not None else np.ones(len(self.cfg))

    def whole(self) -> Columns:
        """The columns that take their whole arc (what a plan without mixed pools uses)."""
        return self if self.share_k is None else self.take(self.share_k == self.grid)

    def __len__(self) -> int:
        """Number of columns."""
        return len(self.cfg)

    def take(self, keep: np.ndarray) -> Columns:
        """The columns selected by ``keep`` (a mask or indices), same configs and sizing."""

        def f(a: np.ndarray) -> np.ndarray:
            return a[keep]

        return Columns(self.bounds, self.configs, f(self.arc_i), f(self.arc_j), f(self.cfg), f(self.instances),
                       f(self.gpus), f(self.energy_w), f(self.provisioned_w), f(self.tokens_s), f(self.cost_h),
                       self.errors, self.sized, self.arc_row, None if self.share_k is None else f(self.share_k),
                       self.grid)

    def pool_sizing(self, i: int, j: int, c: int, k: int | None = None) -> tuple[PoolSizing, Profile] | None:
        """Column (arc (i, j), config c, share k/m) as ``evaluate`` reports a pool:
        (PoolSizing, profile), or None when it was not sized here or is infeasible."""
        k = self.grid if k is None else k
        row = self.arc_row.get((i, j))
        if (c, k) not in self.sized or row is None:
            return None
        pc, prof = self.sized[(c, k)]
        if pc.error[row] is not None:
            return None
        cf = self.configs[c]
        p = pc.row(row, cf.gpu, cf.tp, cf.admission)
        p.split = k / self.grid
        return p, prof


def arcs(bounds: Sequence[int], max_pools: int, compress: Compress | None = None) -> list[tuple[int, int]]:
    """The arcs some plan of at most ``max_pools`` pools can use: a path through (i, j)
    needs one arc more for a start after 0 and one more for an end before M."""
    m = len(bounds)
    b = [0, *bounds]
    out = []
    for i in range(m):
        for j in range(i + 1, m + 1):
            if 1 + (i > 0) + (j < m) > max_pools:
                continue
            if compress is not None and i > 0 and j < m and b[j] < compress.gamma * b[i]:
                continue
            out.append((i, j))
    return out


def generate(problem: Problem, rate: float | None = None, bounds: Sequence[int] | None = None,
             cache: dict[Any, Any] | None = None, workers: int = 1, configs: Sequence[Config] | None = None,
             serving: dict[str, Any] | None = None) -> Columns:
    """Size every (arc, config) candidate at ``rate`` (default: the problem's) over
    ``bounds`` (default: the problem's candidate boundaries) for ``configs`` (default: the
    problem's) with ``serving`` overrides on every pool (default: none).  ``cache`` (a dict
    the caller keeps per rate-independent part of the problem) holds the routed traffic and
    each config's ``PoolShape``, so another arrival rate only redoes the queueing and power.
    ``workers`` > 1 sizes the configs on that many forked processes (where fork exists)."""
    rate = problem.rate if rate is None else rate
    bounds = list(bounds or problem.boundaries)
    b = [0, *bounds]
    m = len(bounds)
    cfgs = list(problem.configs if configs is None else configs)
    cache = {} if cache is None else cache
    tkey = ("traffic", tuple(bounds))
    if tkey not in cache:
        arc_list = arcs(bounds, problem.pools.max_pools, problem.pools.compress)
        routed = [problem.router.pool(b[i], b[j], None if j == m else math.inf) for i, j in arc_list]
        cache[tkey] = (arc_list, TrafficBatch.of([t for t, _ in routed]), np.array([wd for _, wd in routed], float))
    arc_list, tb, win = cache[tkey]
    lo = np.array([b[i] for i, _ in arc_list], float)
    hi = np.array([b[j] for _, j in arc_list], float)
    slo, pw = problem.slo, problem.power
    host = pw.host_w_per_gpu
    ai, aj = np.array([i for i, _ in arc_list]), np.array([j for _, j in arc_list])
    arc_row = {a: k for k, a in enumerate(arc_list)}
    parts: list[tuple[np.ndarray, ...]] = []
    errors: dict[Any, str] = {}
    sized: dict[tuple[int, int], tuple[PoolColumns, Profile]] = {}
    done: dict[int, dict[int, PoolColumns]] = {}
    grid = problem.pools.split_grid
    skeys = [("shape", tuple(bounds), cf.gpu, cf.tp, cf.admission, cf.price) for cf in cfgs]

    def shape(c: int) -> tuple[Profile | None, PoolShape | str]:
        """Config c's profile and rate-independent shape (or why it cannot serve)."""
        cf = cfgs[c]
        try:
            prof = problem.profile(cf.gpu, cf.tp, serving)
        except FleetoptError as e:
            return None, str(e)
        return prof, pool_shapes(prof, tb, lo, hi, win, slo, cf.admission, cf.price)

    def sized_at(c: int) -> tuple[Profile | None, PoolShape | str, dict[int, PoolColumns]]:
        """``shape`` and the config sized at k/m of the rate, k = 1..m (a forked job)."""
        prof, sh = shape(c)
        if prof is None or isinstance(sh, str):
            return prof, sh, {}
        return prof, sh, {k: size_shapes(prof, sh, tb, rate * k / grid, slo, host) for k in range(1, grid + 1)}

    todo = [c for c, k in enumerate(skeys) if k not in cache]
    if can_fork(workers, len(todo)):
        for c, (prof, sh, pcs) in fork_map(sized_at, todo, workers).items():
            cache[skeys[c]] = (prof, sh)
            if pcs:
                done[c] = pcs
    for c in range(len(cfgs)):
        skey = skeys[c]
        if skey not in cache:
            cache[skey] = shape(c)
        prof, sh = cache[skey]
        if prof is None:
            errors[c] = sh
            continue
        for k in range(1, grid + 1):
            pc = done[c][k] if c in done else size_shapes(prof, sh, tb, rate * k / grid, slo, host)
            sized[(c, k)] = (pc, prof)
            ok = np.array([e is None for e in pc.error])
            if k == grid:
                for a in np.flatnonzero(~ok):
                    errors[(int(ai[a]), int(aj[a]), c)] = str(pc.error[a])
            n = pc.instances.astype(float)
            prov = pw.provisioned_w(n, pc.it_power_w, pc.peak_instance_power_w, n * pc.gpus_per_instance,
                                    prof.gpu.tdp_w)
            parts.append((np.full(ok.sum(), c), ai[ok], aj[ok], pc.instances[ok],
                          pc.instances[ok] * pc.gpus_per_instance,
                          pc.it_power_w[ok], prov[ok], pc.tokens_per_s[ok], n[ok] * pc.usd_per_instance_hour,
                          np.full(ok.sum(), k)))
    if not parts:
        none, empty = np.zeros(0, int), np.zeros(0)
        return Columns(bounds, cfgs, none, none, none, none, none, empty, empty, empty, empty, errors, sized, arc_row,
                       none if grid > 1 else None, grid)
    cat = [np.concatenate(x) for x in zip(*parts)]
    cfg_a, i_a, j_a, n_a, g_a, e_a, p_a, t_a, c_a, k_a = cat
    order = np.lexsort((-k_a, cfg_a, j_a, i_a))        # deterministic: by arc, then config, whole first
    return Columns(bounds, cfgs, i_a[order], j_a[order], cfg_a[order], n_a[order].astype(np.int64),
                   g_a[order].astype(np.int64), e_a[order], p_a[order], t_a[order], c_a[order], errors, sized, arc_row,
                   k_a[order].astype(np.int64) if grid > 1 else None, grid)


def objective_terms(cols: Columns, objective: str) -> np.ndarray:
    """Per column, the coefficients the objective reads (rows compared for dominance)."""
    if objective == "min_cost":
        return np.stack([cols.cost_h])
    return np.stack([cols.energy_w, -cols.tokens_s])


def prune_dominated(cols: Columns, objective: str, capped: bool) -> Columns:
    """Drop columns dominated on their arc (see module docstring); ties keep the first.
    Dominance is transitive, so keeping exactly the columns nobody dominates is exact."""
    if not len(cols):
        return cols
    gid = {g: k for k, g in enumerate(dict.fromkeys(c.gpu for c in cols.configs))}
    type_of = np.array([gid[c.gpu] if c.max_gpus is not None else -1 for c in cols.configs])
    parts = [objective_terms(cols, objective)]
    if capped:
        parts.append(cols.provisioned_w[None, :])
    parts.append(np.where(type_of[cols.cfg] >= 0, cols.gpus, 0)[None, :])  # GPUs count where stock is limited
    crit = np.concatenate(parts)                                            # (criteria, columns)
    arc = cols.arc_i * (len(cols.bounds) + 1) + cols.arc_j
    if cols.share_k is not None:                  # only columns of the same share compete
        arc = arc * (cols.grid + 1) + cols.share_k
    uniq, first = np.unique(arc, return_index=True)
    slot = np.arange(len(cols)) - first[np.searchsorted(uniq, arc)]        # position within the arc
    width = int(slot.max()) + 1
    v = np.full((crit.shape[0], len(uniq), width), np.inf)
    grp = np.full((len(uniq), width), -2)
    a_idx = np.searchsorted(uniq, arc)
    v[:, a_idx, slot] = crit
    grp[a_idx, slot] = type_of[cols.cfg]
    le = np.all(v[:, :, None, :] <= v[:, :, :, None], axis=0)      # [arc, a, b]: b no worse than a
    lt = np.any(v[:, :, None, :] < v[:, :, :, None], axis=0)
    earlier = np.arange(width)[None, :] < np.arange(width)[:, None]  # [a, b]: b before a
    same = grp[:, :, None] == grp[:, None, :]
    dom = le & (lt | earlier[None]) & same
    dom &= ~np.eye(width, dtype=bool)[None]
    dominated = dom.any(axis=2)
    return cols.take(~dominated[a_idx, slot])
