"""Candidate pools as MILP columns.

The length range is cut at candidate boundaries 0 = b_0 < b_1 < ... < b_M (the last is the
largest window).  A *pool candidate* is an arc (i, j), i < j, of that boundary graph (routing
keys in (b_i, b_j]) together with a *config* (GPU type, TP, admission policy).  Each is sized
exactly as ``fleetopt evaluate`` sizes a pool (same routing code, same ``size_pools``), so a
plan's figures are the sums of its columns' figures.

Boundaries (choices, named here):
* a list in the instance is used as given (values above the last window are dropped);
* ``auto`` takes ``auto_count`` quantiles of the routing key, rounded up to a multiple of
  64 tokens and deduplicated, below the last window;
* the last window is ``pools.max_window``, else the longest routing key rounded up to a
  power of two;
* ``pools.paper_boundary`` (the baseline's split) is always a candidate.

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
import os
from dataclasses import dataclass, field

import numpy as np

from fleetopt.errors import FleetoptError
from fleetopt.fleet import (GPUS_PER_NODE, Router, _price, check_context, make_pool_profile, model_context,
                            provisioned_w)
from fleetopt.instance import Instance
from fleetopt.procs import die_with_parent
from fleetopt.profiles import mode_of
from fleetopt.sizing import Slo, pool_shapes, size_shapes
from fleetopt.traffic import TrafficBatch
from fleetopt.workload import LengthDist

ROUND_TOKENS = 64


def candidate_boundaries(inst: Instance, dist: LengthDist, context: int = 0) -> list[int]:
    """b_1 < ... < b_M (b_0 = 0 is implicit).  ``context``: the model's context window
    (when known, the automatic last window is not above it)."""
    p = inst.pools
    top = p.max_window or int(2 ** math.ceil(math.log2(max(dist.max_key, 2.0))))
    if context and not p.max_window:
        top = min(top, max(context, int(math.ceil(dist.max_key))))
    if p.boundaries != "auto":
        top = p.max_window or max(p.boundaries)
        inner = sorted({int(b) for b in p.boundaries if 0 < b < top})
    else:
        qs = [dist.quantile_key(k / p.auto_count) for k in range(1, p.auto_count)]
        inner = sorted({int(math.ceil(q / ROUND_TOKENS) * ROUND_TOKENS) for q in qs})
        inner = [b for b in inner if 0 < b < top]
    if p.paper_boundary and p.paper_boundary < top:     # the baseline's split is always a candidate
        inner = sorted(set(inner) | {int(p.paper_boundary)})
    return inner + [int(top)]


@dataclass(frozen=True)
class Config:
    gpu: str
    tp: int
    admission: str
    max_gpus: int | None
    price: float | None


def configs(inst: Instance, catalog) -> list[Config]:
    out = []
    adm = mode_of(inst.mode).admissions(inst.pools.admission)
    for g in inst.gpus:
        gid = catalog.gpu(g.id).id
        for tp in sorted(set(g.tp)):
            for a in adm:
                out.append(Config(gid, tp, a, g.max_gpus, _price(inst, gid, catalog)))
    return out


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
    errors: dict = field(default_factory=dict)
    """Why configs or pools could not be sized: {config index or (i, j, config): message}."""
    sized: dict = field(default_factory=dict)
    """Per config index: (its ``PoolColumns`` over every arc, its profile)."""
    arc_row: dict = field(default_factory=dict)
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

    def whole(self) -> "Columns":
        """The columns that take their whole arc (what a plan without mixed pools uses)."""
        return self if self.share_k is None else self.take(self.share_k == self.grid)

    def __len__(self) -> int:
        return len(self.cfg)

    def take(self, keep: np.ndarray) -> "Columns":
        f = lambda a: a[keep]  # noqa: E731
        return Columns(self.bounds, self.configs, f(self.arc_i), f(self.arc_j), f(self.cfg), f(self.instances),
                       f(self.gpus), f(self.energy_w), f(self.provisioned_w), f(self.tokens_s), f(self.cost_h),
                       self.errors, self.sized, self.arc_row, None if self.share_k is None else f(self.share_k),
                       self.grid)

    def pool_sizing(self, i: int, j: int, c: int, k: int | None = None):
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


def arcs(bounds: list[int], max_pools: int, compress=None) -> list[tuple[int, int]]:
    """The arcs some plan of at most ``max_pools`` pools can use: a path through (i, j)
    needs one arc more for a start after 0 and one more for an end before M."""
    m = len(bounds)
    b = [0] + bounds
    out = []
    for i in range(m):
        for j in range(i + 1, m + 1):
            if 1 + (i > 0) + (j < m) > max_pools:
                continue
            if compress is not None and i > 0 and j < m and b[j] < compress.gamma * b[i]:
                continue
            out.append((i, j))
    return out


_FORK: dict = {}


def _shape_job(c: int):
    """The shape of config c and its sizing at k/m of the rate, k = 1..m (inputs in
    ``_FORK``, inherited by forked workers)."""
    f = _FORK
    cf = f["cfgs"][c]
    try:
        prof = make_pool_profile(f["inst"], cf.gpu, cf.tp, f["catalog"])
    except FleetoptError as e:
        return c, None, str(e), None
    sh = pool_shapes(prof, f["tb"], f["lo"], f["hi"], f["win"], f["slo"], cf.admission, cf.price)
    m = f["grid"]
    return c, prof, sh, {k: size_shapes(prof, sh, f["tb"], f["rate"] * k / m, f["slo"], f["host"]) for k in range(1, m + 1)}


def _drain(queue_fd: int) -> list:
    """Size configs until the queue is empty.  The queue is a pipe holding each config
    index as 4 bytes, written before any reader starts; every read asks for 4 bytes and the
    kernel serialises reads of one pipe, so each process - the parent too - takes whole
    indices, and uneven configs balance themselves without locks."""
    out = []
    while True:
        b = os.read(queue_fd, 4)
        if not b:
            return out
        while len(b) < 4:                   # never seen on Linux; finish the index if it happens
            more = os.read(queue_fd, 4 - len(b))
            if not more:
                return out
            b += more
        out.append(_shape_job(int.from_bytes(b, "little")))


def _shapes_in_parallel(todo: list[int], workers: int, **inputs) -> list:
    """Pool shapes of several configs on the parent and ``workers - 1`` forked children
    (Linux fork: the inputs are inherited, only the results travel back, pickled through a
    pipe).  A child that fails or dies leaves its configs to the parent."""
    import pickle


    _FORK.clear()
    _FORK.update(inputs)
    q_r, q_w = os.pipe()
    os.write(q_w, b"".join(int(c).to_bytes(4, "little") for c in todo))     # fits the pipe (see generate)
    os.close(q_w)
    kids = []
    parent = os.getpid()
    try:
        for _ in range(workers - 1):
            r, w = os.pipe()
            try:
                pid = os.fork()
            except OSError:                              # no process to spare: the parent does it all
                os.close(r)
                os.close(w)
                break
            if pid == 0:                                 # child: drain, send, leave without cleanup
                code = 0
                try:
                    die_with_parent(parent)              # a killed solve takes its helpers with it
                    os.close(r)
                    data = pickle.dumps(_drain(q_r), protocol=pickle.HIGHEST_PROTOCOL)
                    with os.fdopen(w, "wb") as f:
                        f.write(data)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            kids.append((pid, r))
        results = _drain(q_r)
        for pid, r in kids:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            os.waitpid(pid, 0)
            if data:
                try:
                    results += pickle.loads(data)
                except Exception:                        # a child cut short: its configs are redone below
                    pass
        kids = []
    finally:
        for pid, r in kids:                              # interrupted: do not leave children behind
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        os.close(q_r)
        _FORK.clear()
    return results


def generate(inst: Instance, dist: LengthDist, rate: float, catalog, bounds: list[int] | None = None,
             cache: dict | None = None, workers: int = 1) -> Columns:
    """Size every (arc, config) candidate.  ``cache`` (a dict the caller keeps per
    rate-independent part of the instance) holds the routed traffic and each config's
    ``PoolShape``, so another arrival rate only redoes the queueing and power.
    ``workers`` > 1 sizes the configs on that many forked processes (where fork exists)."""
    check_context(inst, dist, catalog)
    bounds = bounds or candidate_boundaries(inst, dist, model_context(inst, catalog))
    b = [0] + bounds
    m = len(bounds)
    cfgs = configs(inst, catalog)
    cache = {} if cache is None else cache
    tkey = ("traffic", tuple(bounds))
    if tkey not in cache:
        arc_list = arcs(bounds, inst.pools.max_pools, inst.pools.compress)
        router = Router(inst, dist)
        routed = [router.pool(b[i], b[j], None if j == m else math.inf) for i, j in arc_list]
        cache[tkey] = (arc_list, TrafficBatch.of([t for t, _ in routed]), np.array([wd for _, wd in routed], float))
    arc_list, tb, win = cache[tkey]
    lo = np.array([b[i] for i, _ in arc_list], float)
    hi = np.array([b[j] for _, j in arc_list], float)
    slo = Slo(inst.slo.ttft_p99_ms, inst.slo.tpot_p99_ms, inst.slo.max_utilization)
    host = inst.power.host_w_per_node / GPUS_PER_NODE
    pue, basis = inst.power.pue, inst.power.provisioning
    ai, aj = np.array([i for i, _ in arc_list]), np.array([j for _, j in arc_list])
    arc_row = {a: k for k, a in enumerate(arc_list)}
    parts, errors, sized, done = [], {}, {}, {}
    grid = inst.pools.split_grid
    skeys = [("shape", tuple(bounds), cf.gpu, cf.tp, cf.admission, cf.price) for cf in cfgs]
    todo = [c for c, k in enumerate(skeys) if k not in cache]
    if workers > 1 and 2 * workers <= len(todo) <= 4096 and hasattr(os, "fork"):   # 4 B each in a 64 KiB pipe
        for c, prof, sh, pc in _shapes_in_parallel(todo, workers, inst=inst, catalog=catalog, cfgs=cfgs, tb=tb,
                                                   lo=lo, hi=hi, win=win, slo=slo, rate=rate, host=host, grid=grid):
            cache[skeys[c]] = (prof, sh)
            done[c] = pc
    for c, cf in enumerate(cfgs):
        skey = skeys[c]
        if skey not in cache:
            try:
                prof = make_pool_profile(inst, cf.gpu, cf.tp, catalog)
            except FleetoptError as e:
                cache[skey] = (None, str(e))
            else:
                cache[skey] = (prof, pool_shapes(prof, tb, lo, hi, win, slo, cf.admission, cf.price))
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
                    errors[(int(ai[a]), int(aj[a]), c)] = pc.error[a]
            n = pc.instances.astype(float)
            prov = provisioned_w(basis, n, pc.it_power_w, pc.peak_instance_power_w, n * pc.gpus_per_instance,
                                 prof.gpu.tdp_w, host, pue)
            parts.append((np.full(ok.sum(), c), ai[ok], aj[ok], pc.instances[ok], pc.instances[ok] * pc.gpus_per_instance,
                          pc.it_power_w[ok], prov[ok], pc.tokens_per_s[ok], n[ok] * pc.usd_per_instance_hour,
                          np.full(ok.sum(), k)))
    if not parts:
        return Columns(bounds, cfgs, *(np.zeros(0, int) for _ in range(6)), *(np.zeros(0) for _ in range(3)), errors,
                       sized, arc_row, np.zeros(0, int) if grid > 1 else None, grid)
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
    crit = [objective_terms(cols, objective)]
    if capped:
        crit.append(cols.provisioned_w[None, :])
    crit.append(np.where(type_of[cols.cfg] >= 0, cols.gpus, 0)[None, :])   # GPUs count where stock is limited
    crit = np.concatenate(crit)                                             # (criteria, columns)
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
