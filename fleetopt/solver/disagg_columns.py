"""The columns of the disaggregation-aware solve (``pools.disaggregation: allow | only``).

* aggregated columns are ``fleetopt.columns``' (none with ``only``), and, for every
  fraction f < 1 in ``pools.phase_power_caps``, the same columns with each GPU capped at f x
  its TDP (``Config.cap``), so split and aggregated pools are offered the same caps;
* prefill configs: every GPU option x TP x ``pools.phase_power_caps`` fraction; decode
  configs: the same x admission policy; a phase's cap below 1 sets its ``power_cap_w`` to
  that fraction of TDP, 1 keeps the instance's ``serving`` settings;
* every (arc, prefill config, transfer width) and (arc, decode config) is sized by
  ``fleetopt.disagg`` (the code ``evaluate`` runs for a ``pd(...)`` pool), on the traffic
  ``fleetopt.columns`` routes to the arc; widths are the decode configs' GPUs per instance
  below the prefill instance's, and its own (the mathematics in ``formulations.fleet_disagg``);
* a phase column dominated on its arc, width (prefill) or GPUs per instance (decode) and GPU
  type group by another (no better on the objective, provisioned power under a cap, and GPUs
  where the type's stock is limited) is dropped before the MILP (exact).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.columns import Columns, arcs, generate
from fleetopt.disagg import DECODE, PREFILL, PhaseColumns, kv_link, phase_serving, size_decode, size_prefill
from fleetopt.errors import FleetoptError
from fleetopt.problem import Config, Problem
from fleetopt.profiles.point import as_admission
from fleetopt.traffic import TrafficBatch

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile


@dataclass(frozen=True)
class PhaseConfig:
    """A prefill or decode configuration: GPU type, TP, admission (decode) and power cap."""

    phase: str
    gpu: str
    tp: int
    admission: str
    cap: float
    """Fraction of TDP (1 = the instance's serving settings)."""
    max_gpus: int | None
    price: float | None

    def label(self) -> str:
        """``gpu x tp[:admission][@cap tdp]``."""
        s = f"{self.gpu}x{self.tp}" + (f":{self.admission}" if self.phase == DECODE else "")
        return s + (f"@{self.cap:g}tdp" if self.cap < 1.0 else "")


def phase_configs(problem: Problem) -> tuple[list[PhaseConfig], list[PhaseConfig]]:
    """(prefill configs, decode configs) of the problem, in a fixed order."""
    pre: list[PhaseConfig] = []
    dec: list[PhaseConfig] = []
    caps = sorted(set(problem.pools.phase_power_caps), reverse=True)
    for cf in problem.configs:
        for cap in caps:
            dec.append(PhaseConfig(DECODE, cf.gpu, cf.tp, cf.admission, cap, cf.max_gpus, cf.price))
    for gpu, tp, max_gpus, price in dict.fromkeys((c.gpu, c.tp, c.max_gpus, c.price) for c in problem.configs):
        for cap in caps:
            pre.append(PhaseConfig(PREFILL, gpu, tp, "-", cap, max_gpus, price))
    return pre, dec


def merge_columns(a: Columns, b: Columns) -> Columns:
    """The columns of both (same boundaries and arcs, one config per pool), b's configs
    appended, ordered by (arc, config) as ``columns.generate`` orders them."""
    off = len(a.configs)
    shift = lambda k: k + off if isinstance(k, int) else (k[0], k[1], k[2] + off)  # noqa: E731

    def cat(f: str) -> np.ndarray:
        return np.concatenate([getattr(a, f), getattr(b, f) + (off if f == "cfg" else 0)])

    m = Columns(a.bounds, a.configs + b.configs, cat("arc_i"), cat("arc_j"), cat("cfg"), cat("instances"),
                cat("gpus"), cat("energy_w"), cat("provisioned_w"), cat("tokens_s"), cat("cost_h"),
                {**a.errors, **{shift(k): v for k, v in b.errors.items()}},
                {**a.sized, **{(c + off, k): v for (c, k), v in b.sized.items()}}, a.arc_row)
    return m.take(np.lexsort((m.cfg, m.arc_j, m.arc_i)))


def aggregated_columns(problem: Problem, rate: float, raw: Columns) -> Columns:
    """``raw`` plus, per cap fraction f < 1 and GPU option, its columns at f x TDP."""
    cols = raw
    for f in sorted({c for c in problem.pools.phase_power_caps if c < 1.0}, reverse=True):
        for g in dict.fromkeys(cf.gpu for cf in problem.configs):
            tdp = problem.catalog.gpu(g).tdp_w
            extra = generate(problem, rate, bounds=raw.bounds, configs=[c for c in problem.configs if c.gpu == g],
                             serving={"power_cap_w": f * tdp})
            extra = dataclasses.replace(extra, configs=[Config(c.gpu, c.tp, c.admission, c.max_gpus, c.price, f)
                                                        for c in extra.configs])
            cols = merge_columns(cols, extra)
    return cols


@dataclass
class PhaseCols:
    """Sized phase columns as flat arrays (one entry per column)."""

    phase: str
    arc_i: np.ndarray
    arc_j: np.ndarray
    cfg: np.ndarray
    width: np.ndarray
    """Prefill: transfer lanes sized for; decode: GPUs per instance."""
    instances: np.ndarray
    gpus: np.ndarray
    energy_w: np.ndarray
    provisioned_w: np.ndarray
    tokens_s: np.ndarray
    cost_h: np.ndarray

    def __len__(self) -> int:
        """Number of columns."""
        return len(self.cfg)

    def take(self, keep: np.ndarray) -> PhaseCols:
        """The columns selected by ``keep``."""
        return PhaseCols(self.phase, *(getattr(self, f.name)[keep] for f in dataclasses.fields(self)[1:]))


@dataclass
class SplitColumns:
    """Both phases' columns over the same boundaries, with their configs and errors."""

    bounds: list[int]
    pre_cfgs: list[PhaseConfig]
    dec_cfgs: list[PhaseConfig]
    pre: PhaseCols
    dec: PhaseCols
    errors: dict[Any, str] = field(default_factory=dict)


def _routed(problem: Problem, bounds: list[int]) -> tuple[list[tuple[int, int]], TrafficBatch, np.ndarray]:
    """The arcs a plan of at most K pools can use and their traffic (as ``columns.generate``)."""
    b = [0, *bounds]
    m = len(bounds)
    arc_list = arcs(bounds, problem.pools.max_pools, problem.pools.compress)
    routed = [problem.router.pool(b[i], b[j], None if j == m else math.inf) for i, j in arc_list]
    return arc_list, TrafficBatch.of([t for t, _ in routed]), np.array([w for _, w in routed], float)


def _phase_profile(problem: Problem, cf: PhaseConfig, key: tuple[str, int], errors: dict[Any, str]) -> Profile | None:
    """The profile a phase config runs on (its serving settings with the phase's power cap),
    or None with the reason recorded under ``key`` when the config cannot run."""
    try:
        return problem.profile(cf.gpu, cf.tp, phase_serving(problem.catalog, cf.gpu, cf.cap))
    except FleetoptError as e:
        errors[key] = str(e)
        return None


def _cols_of(phase: str, pc: PhaseColumns, c: int, width: int, ai: np.ndarray, aj: np.ndarray, prof: Profile,
             problem: Problem) -> tuple[np.ndarray, ...]:
    """The feasible rows of one sized phase config as column arrays."""
    ok = np.array([e is None for e in pc.error])
    n = pc.instances.astype(float)
    prov = problem.power.provisioned_w(n, pc.it_power_w, pc.peak_instance_power_w, n * pc.gpus_per_instance,
                                       prof.gpu.tdp_w)
    return (ai[ok], aj[ok], np.full(ok.sum(), c), np.full(ok.sum(), width), pc.instances[ok],
            pc.instances[ok] * pc.gpus_per_instance, pc.it_power_w[ok], prov[ok], pc.tokens_per_s[ok],
            n[ok] * pc.usd_per_instance_hour)


def _stack(phase: str, parts: list[tuple[np.ndarray, ...]]) -> PhaseCols:
    """Column arrays of several configs stacked, ordered by arc, config and width."""
    if not parts:
        z = np.zeros(0, np.int64)
        return PhaseCols(phase, z, z, z, z, z, z, *(np.zeros(0) for _ in range(4)))
    a = [np.concatenate(x) for x in zip(*parts)]
    order = np.lexsort((a[3], a[2], a[1], a[0]))     # deterministic: by arc, config, width
    ints = (0, 1, 2, 3, 4, 5)
    return PhaseCols(phase, *(a[k][order].astype(np.int64) if k in ints else a[k][order] for k in range(10)))


def generate_split(problem: Problem, rate: float, bounds: list[int]) -> SplitColumns:
    """Size every (arc, prefill config, width) and (arc, decode config) candidate."""
    pre_cfgs, dec_cfgs = phase_configs(problem)
    arc_list, tb, win = _routed(problem, bounds)
    b = [0, *bounds]
    lo = np.array([b[i] for i, _ in arc_list], float)
    hi = np.array([b[j] for _, j in arc_list], float)
    ai, aj = np.array([i for i, _ in arc_list], np.int64), np.array([j for _, j in arc_list], np.int64)
    slo, host = problem.slo, problem.power.host_w_per_gpu
    link = kv_link(problem.pools.kv_link)
    errors: dict[Any, str] = {}
    dec_parts: list[tuple[np.ndarray, ...]] = []
    dec_gpus: dict[int, tuple[str, int]] = {}
    for c, cf in enumerate(dec_cfgs):
        prof = _phase_profile(problem, cf, (DECODE, c), errors)
        if prof is None:
            continue
        g = int(prof.gpus_per_instance)
        dec_gpus[c] = (cf.gpu, g)
        pc = size_decode(prof, tb, rate, lo, hi, win, slo, as_admission(cf.admission), host, cf.price)
        errors.update({(DECODE, int(ai[k]), int(aj[k]), c): e for k, e in enumerate(pc.error) if e})
        dec_parts.append(_cols_of(DECODE, pc, c, g, ai, aj, prof, problem))
    pre_parts: list[tuple[np.ndarray, ...]] = []
    for c, cf in enumerate(pre_cfgs):
        prof = _phase_profile(problem, cf, (PREFILL, c), errors)
        if prof is None:
            continue
        g = int(prof.gpus_per_instance)
        peers = {h for t, h in dec_gpus.values() if not link.same_gpu_type or t == cf.gpu}
        for width in sorted({h for h in peers if h < g} | {g}):
            pc = size_prefill(prof, tb, rate, lo, hi, slo, width, link, host, cf.price)
            errors.update({(PREFILL, int(ai[k]), int(aj[k]), c): e for k, e in enumerate(pc.error) if e})
            pre_parts.append(_cols_of(PREFILL, pc, c, width, ai, aj, prof, problem))
    return SplitColumns(bounds, pre_cfgs, dec_cfgs, _stack(PREFILL, pre_parts), _stack(DECODE, dec_parts), errors)


def prune_phase(cols: PhaseCols, cfgs: list[PhaseConfig], objective: str, capped: bool,
                group_type: bool) -> PhaseCols:
    """Drop phase columns dominated within (arc, width, type group); ties keep the first.
    The type group is the GPU type where its stock is limited (or the link needs one type),
    else one group; criteria: the objective's coefficient, provisioned power under a cap,
    and GPUs where the stock is limited (exact, as ``columns.prune_dominated``)."""
    if not len(cols):
        return cols
    limited = [cf.max_gpus is not None or group_type for cf in cfgs]
    tnames = {g: k for k, g in enumerate(dict.fromkeys(cf.gpu for cf in cfgs))}
    tgroup = np.array([tnames[cf.gpu] if lim else -1 for cf, lim in zip(cfgs, limited)])[cols.cfg]
    parts = [cols.cost_h if objective == "min_cost" else cols.energy_w]
    if capped:
        parts.append(cols.provisioned_w)
    parts.append(np.where(tgroup >= 0, cols.gpus, 0))
    crit = np.stack(parts, axis=1)
    keys = np.stack([cols.arc_i, cols.arc_j, cols.width, tgroup], axis=1)
    keep = np.ones(len(cols), bool)
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    for g in np.unique(inv):
        idx = np.flatnonzero(inv == g)
        if idx.size < 2:
            continue
        v = crit[idx]
        le = np.all(v[None, :, :] <= v[:, None, :], axis=2)          # [a, b]: b no worse than a
        lt = np.any(v[None, :, :] < v[:, None, :], axis=2)
        earlier = np.arange(idx.size)[None, :] < np.arange(idx.size)[:, None]
        dom = le & (lt | earlier)
        np.fill_diagonal(dom, False)
        keep[idx[dom.any(axis=1)]] = False
    return cols.take(keep)
