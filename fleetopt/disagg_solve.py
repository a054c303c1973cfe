"""``fleetopt solve`` with ``pools.disaggregation: allow | only``: split-pool columns, the
``fleet_disagg`` MILP, the plan and its comparison with the best aggregated plan.

Columns (choices named here):
* aggregated columns are ``fleetopt.columns``' (none with ``only``), and, for every
  fraction f < 1 in ``pools.phase_power_caps``, the same columns with each GPU capped at f x
  its TDP (``CappedConfig``), so split and aggregated pools are offered the same caps;
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

The aggregated optimum is solved too (``formulations.fleet`` on the same aggregated columns)
and reported as the ``aggregated`` baseline with the gain against it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fleetopt.errors import FleetoptError, InfeasibleError, NoPlanInTimeError
from fleetopt.columns import Columns, Config, arcs, configs, prune_dominated
from fleetopt.disagg import DECODE, PREFILL, PhaseColumns, check_disaggregation, kv_link, phase_serving, \
    size_decode, size_prefill
from fleetopt.fleet import GPUS_PER_NODE, PoolChoice, Router, evaluate, make_pool_profile, provisioned_w
from fleetopt.instance import Instance
from fleetopt.sizing import Slo
from fleetopt.traffic import TrafficBatch

if TYPE_CHECKING:
    from fleetopt.catalog import Catalog
    from fleetopt.profiles import Profile
    from fleetopt.workload import LengthDist
    from formulations.fleet import SolveResult
    from formulations.fleet_disagg import DisaggModelData


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
        s = f"{self.gpu}x{self.tp}" + (f":{self.admission}" if self.phase == DECODE else "")
        return s + (f"@{self.cap:g}tdp" if self.cap < 1.0 else "")


def phase_configs(inst: Instance, catalog: Catalog) -> tuple[list[PhaseConfig], list[PhaseConfig]]:
    """(prefill configs, decode configs) of the instance, in a fixed order."""
    pre, dec = [], []
    caps = sorted(set(inst.pools.phase_power_caps), reverse=True)
    for cf in configs(inst, catalog):
        for cap in caps:
            dec.append(PhaseConfig(DECODE, cf.gpu, cf.tp, cf.admission, cap, cf.max_gpus, cf.price))
    for cf in dict.fromkeys((c.gpu, c.tp, c.max_gpus, c.price) for c in configs(inst, catalog)):
        for cap in caps:
            pre.append(PhaseConfig(PREFILL, cf[0], cf[1], "-", cap, cf[2], cf[3]))
    return pre, dec


@dataclass(frozen=True)
class CappedConfig(Config):
    """An aggregated pool's config with every GPU capped at ``cap`` x TDP."""

    cap: float = 1.0


def merge_columns(a: Columns, b: Columns) -> Columns:
    """The columns of both (same boundaries and arcs, one config per pool), b's configs
    appended, ordered by (arc, config) as ``columns.generate`` orders them."""
    off = len(a.configs)
    shift = lambda k: k + off if isinstance(k, int) else (k[0], k[1], k[2] + off)  # noqa: E731
    names = ("arc_i", "arc_j", "cfg", "instances", "gpus", "energy_w", "provisioned_w", "tokens_s", "cost_h")
    arrays = (np.concatenate([getattr(a, f), getattr(b, f) + (off if f == "cfg" else 0)]) for f in names)
    m = Columns(a.bounds, a.configs + b.configs, *arrays,
                {**a.errors, **{shift(k): v for k, v in b.errors.items()}},
                {**a.sized, **{(c + off, k): v for (c, k), v in b.sized.items()}}, a.arc_row)
    return m.take(np.lexsort((m.cfg, m.arc_j, m.arc_i)))


def aggregated_columns(inst: Instance, dist: LengthDist, rate: float, catalog: Catalog, raw: Columns) -> Columns:
    """``raw`` plus, per cap fraction f < 1 and GPU option, its columns at f x TDP."""
    from fleetopt.columns import generate
    from fleetopt.records import replace

    cols = raw
    for f in sorted({c for c in inst.pools.phase_power_caps if c < 1.0}, reverse=True):
        for g in inst.gpus:
            sub = replace(inst, gpus=[g], serving=replace(inst.serving, power_cap_w=f * catalog.gpu(g.id).tdp_w))
            extra = generate(sub, dist, rate, catalog, bounds=raw.bounds)
            extra = dataclasses.replace(extra, configs=[CappedConfig(c.gpu, c.tp, c.admission, c.max_gpus, c.price, f)
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
        return len(self.cfg)

    def take(self, keep) -> "PhaseCols":
        return PhaseCols(self.phase, *(getattr(self, f.name)[keep] for f in dataclasses.fields(self)[1:]))


@dataclass
class SplitColumns:
    bounds: list[int]
    pre_cfgs: list[PhaseConfig]
    dec_cfgs: list[PhaseConfig]
    pre: PhaseCols
    dec: PhaseCols
    errors: dict = field(default_factory=dict)


def _routed(inst: Instance, dist: LengthDist, bounds: list[int]) -> tuple[list, TrafficBatch, np.ndarray]:
    """The arcs a plan of at most K pools can use and their traffic (as ``columns.generate``)."""
    b = [0] + bounds
    m = len(bounds)
    arc_list = arcs(bounds, inst.pools.max_pools, inst.pools.compress)
    router = Router(inst, dist)
    routed = [router.pool(b[i], b[j], None if j == m else math.inf) for i, j in arc_list]
    return arc_list, TrafficBatch.of([t for t, _ in routed]), np.array([w for _, w in routed], float)


def _cols_of(phase: str, pc: PhaseColumns, c: int, width: int, ai: np.ndarray, aj: np.ndarray, prof: Profile,
             inst: Instance, host: float) -> tuple:
    ok = np.array([e is None for e in pc.error])
    n = pc.instances.astype(float)
    pw = inst.power
    prov = provisioned_w(pw.provisioning, n, pc.it_power_w, pc.peak_instance_power_w, n * pc.gpus_per_instance,
                         prof.gpu.tdp_w, host, pw.pue)
    return (ai[ok], aj[ok], np.full(ok.sum(), c), np.full(ok.sum(), width), pc.instances[ok],
            pc.instances[ok] * pc.gpus_per_instance, pc.it_power_w[ok], prov[ok], pc.tokens_per_s[ok],
            n[ok] * pc.usd_per_instance_hour)


def _stack(phase: str, parts: list[tuple]) -> PhaseCols:
    if not parts:
        z = np.zeros(0, np.int64)
        return PhaseCols(phase, z, z, z, z, z, z, *(np.zeros(0) for _ in range(4)))
    a = [np.concatenate(x) for x in zip(*parts)]
    order = np.lexsort((a[3], a[2], a[1], a[0]))     # deterministic: by arc, config, width
    ints = (0, 1, 2, 3, 4, 5)
    return PhaseCols(phase, *(a[k][order].astype(np.int64) if k in ints else a[k][order] for k in range(10)))


def generate_split(inst: Instance, dist: LengthDist, rate: float, catalog: Catalog, bounds: list[int]) -> SplitColumns:
    """Size every (arc, prefill config, width) and (arc, decode config) candidate."""
    pre_cfgs, dec_cfgs = phase_configs(inst, catalog)
    arc_list, tb, win = _routed(inst, dist, bounds)
    b = [0] + bounds
    lo = np.array([b[i] for i, _ in arc_list], float)
    hi = np.array([b[j] for _, j in arc_list], float)
    ai, aj = np.array([i for i, _ in arc_list], np.int64), np.array([j for _, j in arc_list], np.int64)
    slo = Slo(inst.slo.ttft_p99_ms, inst.slo.tpot_p99_ms, inst.slo.max_utilization)
    host = inst.power.host_w_per_node / GPUS_PER_NODE
    link = kv_link(inst.pools.kv_link)
    errors: dict = {}
    dec_parts, dec_gpus = [], {}
    for c, cf in enumerate(dec_cfgs):
        try:
            prof = make_pool_profile(inst, cf.gpu, cf.tp, catalog, phase_serving(inst, catalog, cf.gpu, cf.cap))
        except FleetoptError as e:
            errors[(DECODE, c)] = str(e)
            continue
        g = int(prof.gpus_per_instance)
        dec_gpus[c] = (cf.gpu, g)
        pc = size_decode(prof, tb, rate, lo, hi, win, slo, cf.admission, host, cf.price)
        errors.update({(DECODE, int(ai[k]), int(aj[k]), c): e for k, e in enumerate(pc.error) if e})
        dec_parts.append(_cols_of(DECODE, pc, c, g, ai, aj, prof, inst, host))
    pre_parts = []
    for c, cf in enumerate(pre_cfgs):
        try:
            prof = make_pool_profile(inst, cf.gpu, cf.tp, catalog, phase_serving(inst, catalog, cf.gpu, cf.cap))
        except FleetoptError as e:
            errors[(PREFILL, c)] = str(e)
            continue
        g = int(prof.gpus_per_instance)
        peers = {h for t, h in dec_gpus.values() if not link.same_gpu_type or t == cf.gpu}
        for width in sorted({h for h in peers if h < g} | {g}):
            pc = size_prefill(prof, tb, rate, lo, hi, slo, width, link, host, cf.price)
            errors.update({(PREFILL, int(ai[k]), int(aj[k]), c): e for k, e in enumerate(pc.error) if e})
            pre_parts.append(_cols_of(PREFILL, pc, c, width, ai, aj, prof, inst, host))
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
    crit = [cols.cost_h if objective == "min_cost" else cols.energy_w]
    if capped:
        crit.append(cols.provisioned_w)
    crit.append(np.where(tgroup >= 0, cols.gpus, 0))
    crit = np.stack(crit, axis=1)
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


def model_data(inst: Instance, agg: Columns | None, split: SplitColumns) -> DisaggModelData:
    """``DisaggModelData`` of the aggregated and phase columns."""
    from formulations.fleet_disagg import DisaggModelData, Kind

    stock: dict[str, int] = {}
    for cf in [*(agg.configs if agg is not None else []), *split.pre_cfgs, *split.dec_cfgs]:
        if cf.max_gpus is not None:
            stock[cf.gpu] = min(stock.get(cf.gpu, cf.max_gpus), cf.max_gpus)
    k_agg = Kind.empty() if agg is None or not len(agg) else Kind(
        agg.arc_i, agg.arc_j, [agg.configs[c].gpu for c in agg.cfg], agg.gpus, agg.provisioned_w)
    k_pre = Kind(split.pre.arc_i, split.pre.arc_j, [split.pre_cfgs[c].gpu for c in split.pre.cfg], split.pre.gpus,
                 split.pre.provisioned_w, split.pre.width)
    k_dec = Kind(split.dec.arc_i, split.dec.arc_j, [split.dec_cfgs[c].gpu for c in split.dec.cfg], split.dec.gpus,
                 split.dec.provisioned_w, split.dec.width)
    cap = inst.power.facility_cap_mw * 1e6 if inst.power.facility_cap_mw is not None else None
    return DisaggModelData(len(split.bounds) + 1, k_agg, k_pre, k_dec, inst.pools.max_pools, stock, cap,
                           kv_link(inst.pools.kv_link).same_gpu_type)


def _weights(agg: Columns | None, split: SplitColumns, what: str) -> np.ndarray:
    parts = [] if agg is None else [getattr(agg, what)]
    return np.concatenate(parts + [getattr(split.pre, what), getattr(split.dec, what)]).astype(float)


def _simplest(agg: Columns | None, split: SplitColumns) -> np.ndarray:
    """Tie-break weights, lexicographic: 1 per column (a split range counts two pools), then
    a unit per GPU (all GPU terms of a plan below one column), then a small fraction of a unit per
    phase column, so that of equally simple plans with as many GPUs the aggregated one wins."""
    g = _weights(agg, split, "gpus")
    unit = 1.0 / (10.0 * max(float(g.max(initial=1.0)), 1.0) * 2 * len(split.bounds))
    na = 0 if agg is None else len(agg)
    phase = np.r_[np.zeros(na), np.ones(len(g) - na)]
    return 1.0 + g * unit + phase * unit / (4.0 * len(split.bounds))


def solve_combined(inst: Instance, agg: Columns | None, split: SplitColumns,
                   verbose: bool = False) -> tuple[SolveResult, DisaggModelData]:
    """The ``fleet_disagg`` MILP for the instance's objective (fixed demand), then the
    tie-break among plans within the proven gap, both within ``solver.time_limit_s``
    together (the tie-break is skipped, with a note, when nothing is left of it);
    ``chosen`` indexes x, u, v."""
    from formulations.fleet_disagg import solve_direct, solve_pyomo

    s = inst.solver
    deadline = time.perf_counter() + s.time_limit_s
    data = model_data(inst, agg, split)
    w = _weights(agg, split, "cost_h" if inst.objective == "min_cost" else "energy_w")

    def run(weights, start=None):
        left = max(deadline - time.perf_counter(), 1e-3)
        if s.interface == "pyomo":
            return solve_pyomo(data, weights, "min", left, s.mip_gap, s.threads, s.seed, verbose, s.presolve)
        return solve_direct(data, weights, "min", left, s.mip_gap, s.threads, s.seed, verbose, s.presolve, start)

    res = run(w)
    if res.chosen:
        true = float(w[res.chosen].sum())
        res.bound = min(res.bound, true) if res.bound is not None else true
        res.objective = true
        tol = max(s.mip_gap, 1e-9)
        if deadline - time.perf_counter() > 0.0:
            data.budget = (w, true * (1 + tol))
            second = run(_simplest(agg, split), res.chosen)
            data.budget = None
            if second.chosen and float(w[second.chosen].sum()) <= true * (1 + tol):
                res.chosen, res.objective = second.chosen, float(w[second.chosen].sum())
                res.seconds += second.seconds
        else:
            res.notes.append("tie-break skipped: the time limit was reached")
        res.gap = abs(res.objective - res.bound) / max(abs(res.objective), 1e-12)
    return res, data


def topology_of(inst: Instance, catalog: Catalog, agg: Columns | None, split: SplitColumns | None,
                chosen: list[int]) -> list[PoolChoice]:
    """The chosen columns (indices over aggregated, prefill, decode columns) as a topology
    (a split range as one ``pd`` choice); a range without traffic joins the next one."""
    na = 0 if agg is None else len(agg)
    npre = 0 if split is None else len(split.pre)
    ranges: dict[int, tuple[int, int, PoolChoice]] = {}       # arc tail -> (head, instances, choice)
    pre_on: dict[tuple, int] = {}
    dec_on: dict[tuple, int] = {}
    for c in chosen:
        if c < na:
            cf = agg.configs[agg.cfg[c]]
            up = agg.bounds[agg.arc_j[c] - 1]
            ranges[int(agg.arc_i[c])] = (int(agg.arc_j[c]), int(agg.instances[c]), PoolChoice(
                up, cf.gpu, cf.tp, cf.admission, phase_serving(inst, catalog, cf.gpu, getattr(cf, "cap", 1.0))))
        elif c < na + npre:
            k = c - na
            pre_on[(int(split.pre.arc_i[k]), int(split.pre.arc_j[k]))] = k
        else:
            k = c - na - npre
            dec_on[(int(split.dec.arc_i[k]), int(split.dec.arc_j[k]))] = k
    for a, kp in pre_on.items():
        kd = dec_on[a]
        pcf, dcf = split.pre_cfgs[split.pre.cfg[kp]], split.dec_cfgs[split.dec.cfg[kd]]
        choice = PoolChoice(split.bounds[a[1] - 1], dcf.gpu, dcf.tp, dcf.admission,
                            phase_serving(inst, catalog, dcf.gpu, dcf.cap), prefill_gpu=pcf.gpu, prefill_tp=pcf.tp,
                            prefill_serving=phase_serving(inst, catalog, pcf.gpu, pcf.cap))
        ranges[a[0]] = (a[1], int(split.pre.instances[kp] + split.dec.instances[kd]), choice)
    seq = [ranges[i] for i in sorted(ranges)]
    if len(seq) > 1:
        kept = [r for r in seq[:-1] if r[1] > 0] + [seq[-1]]
        if seq[-1][1] == 0 and len(kept) > 1:
            last = kept.pop()
            kept[-1] = (kept[-1][0], kept[-1][1], dataclasses.replace(kept[-1][2], upper=last[2].upper))
        seq = kept
    return [r[2] for r in seq]


def _diagnose(inst: Instance, raw: Columns, split: SplitColumns) -> str:
    from fleetopt.solve import diagnose

    if inst.pools.disaggregation == "allow" and len(raw.whole()):
        agg = diagnose(inst, raw)
    else:
        agg = None
    errs = [v for v in split.errors.values()]
    if not len(split.pre) or not len(split.dec):
        why = f"no split pool meets the SLOs: {errs[0]}" if errs else "no split pool candidates"
        return why if agg is None else f"{agg}; {why}"
    return agg or ("no feasible plan of split pools within the power cap and inventories"
                   + (f" (e.g. {errs[0]})" if errs else ""))


def _aggregated_optimum(inst: Instance, base: Path, cat: Catalog, dist: LengthDist, rate: float, raw: Columns,
                        agg_all: Columns, verbose: bool) -> dict | None:
    """The best aggregated plan (``formulations.fleet`` on the aggregated columns, the capped
    ones included)."""
    from fleetopt.milp import StagedSolve
    from fleetopt.solve import _reader

    cols = prune_dominated(agg_all, inst.objective, inst.power.facility_cap_mw is not None)
    if not len(cols):
        return None
    res, _ = StagedSolve(inst, cols, verbose).run()
    if not res.chosen:
        return None
    topo = topology_of(inst, cat, cols, None, res.chosen)
    out = evaluate(inst, base, topo, catalog=cat, workload=(dist, rate), sized=_reader(inst, raw))
    out["topology"] = ",".join(p.spec() for p in topo)
    return out


def finish_solve_disagg(inst: Instance, base: Path, cat: Catalog, dist: LengthDist, rate: float, raw: Columns,
                        t0: float, verbose: bool = False, extra: dict | None = None) -> dict:
    """Solve over aggregated and split columns and report (``fleetopt.solve.finish_solve``'s
    layout, with the ``aggregated`` baseline and a ``disaggregation`` section)."""
    from fleetopt.solve import _baseline, _brief, _gains, _reader

    check_disaggregation(inst)
    capped = inst.power.facility_cap_mw is not None
    allow = inst.pools.disaggregation == "allow"
    agg_all = aggregated_columns(inst, dist, rate, cat, raw)
    agg = prune_dominated(agg_all, inst.objective, capped) if allow else None
    split = generate_split(inst, dist, rate, cat, raw.bounds)
    link = kv_link(inst.pools.kv_link)
    raw_sizes = (len(split.pre), len(split.dec))
    split = dataclasses.replace(split, pre=prune_phase(split.pre, split.pre_cfgs, inst.objective, capped,
                                                       link.same_gpu_type),
                                dec=prune_phase(split.dec, split.dec_cfgs, inst.objective, capped, link.same_gpu_type))
    t_cols = time.perf_counter() - t0
    res, data = solve_combined(inst, agg, split, verbose)
    if not res.chosen:
        if res.status == "time_limit":
            from fleetopt.solve import _no_plan_in_time

            raise NoPlanInTimeError(_no_plan_in_time(inst))
        raise InfeasibleError(_diagnose(inst, raw, split))
    topo = topology_of(inst, cat, agg, split, res.chosen)
    plan = evaluate(inst, base, topo, catalog=cat, workload=(dist, rate), sized=_reader(inst, raw))
    m = len(raw.bounds)
    homog = _baseline(inst, base, raw, [m], dist, rate, cat)
    pb = inst.pools.paper_boundary
    two = _baseline(inst, base, raw, [raw.bounds.index(pb) + 1, m], dist, rate, cat) \
        if pb is not None and pb in raw.bounds[:-1] else None
    best_agg = _aggregated_optimum(inst, base, cat, dist, rate, raw, agg_all, verbose)
    split_ranges = [p for p in topo if p.prefill_gpu is not None]
    out = {"instance": inst.name, "mode": inst.mode, "model": inst.model, "objective": inst.objective,
           "topology": ",".join(p.spec() for p in topo), "pools": plan["pools"], "fleet": plan["fleet"],
           "baselines": {"homogeneous": _brief(homog), "two_pool_paper": _brief(two), "aggregated": _brief(best_agg)},
           "gains": {"vs_homogeneous": _gains(plan, homog), "vs_two_pool_paper": _gains(plan, two),
                     "vs_aggregated": _gains(plan, best_agg)},
           "disaggregation": {"mode": inst.pools.disaggregation, "kv_link": link.id,
                              "split_ranges": len(split_ranges), "ranges": len(topo),
                              "phases": [{"upper": p.upper, "prefill": f"{p.prefill_gpu}x{p.prefill_tp}",
                                          "decode": f"{p.gpu}x{p.tp}"} for p in split_ranges]},
           "solver": {"name": "HiGHS via " + ("pyomo.contrib.solver.solvers.highs.Highs"
                                              if inst.solver.interface == "pyomo" else "highspy (the model's rows as "
                                              "a matrix)") + ", formulation fleet_disagg",
                      "status": res.status, "objective": res.objective, "bound": res.bound, "gap": res.gap,
                      "seconds": time.perf_counter() - t0, "solve_seconds": res.seconds, "column_seconds": t_cols,
                      "variables": res.variables, "constraints": res.constraints, "dinkelbach_iterations": 0,
                      "notes": res.notes},
           "search_space": {"boundaries": raw.bounds,
                            "configs": [f"{c.gpu}x{c.tp}:{c.admission}"
                                        + (f"@{c.cap:g}tdp" if getattr(c, "cap", 1.0) < 1 else "")
                                        for c in agg_all.configs] if allow else [],
                            "prefill_configs": [c.label() for c in split.pre_cfgs],
                            "decode_configs": [c.label() for c in split.dec_cfgs],
                            "max_pools": inst.pools.max_pools,
                            "columns": (len(agg_all) if allow else 0) + sum(raw_sizes),
                            "columns_after_pruning": ((len(agg) if agg is not None else 0) + len(split.pre)
                                                      + len(split.dec)),
                            "infeasible_columns": len([k for k in raw.errors if not isinstance(k, int)])
                            + len([k for k in split.errors if len(k) == 4])}}
    if extra:
        out.update(extra)
    return out


def solve_disagg(inst: Instance, base: Path, cat: Catalog, dist: LengthDist, rate: float, t0: float,
                 verbose: bool = False, workers: int = 1) -> dict:
    """``solve_instance`` with disaggregation on; ``max_throughput`` bisects the demand
    scale (to 0.1 %) on the combined model, as ``fleetopt.solve`` does on the aggregated one."""
    from fleetopt.columns import generate
    from fleetopt.records import replace

    check_disaggregation(inst)
    if inst.objective != "max_throughput":
        return finish_solve_disagg(inst, base, cat, dist, rate, generate(inst, dist, rate, cat, workers=workers), t0,
                                   verbose)
    if inst.power.facility_cap_mw is None:
        raise FleetoptError("objective: max_throughput needs power.facility_cap_mw")
    energy = replace(inst, objective="max_tokens_per_joule")
    shapes: dict = {}

    def feasible(s: float) -> bool:
        raw = generate(energy, dist, rate * s, cat, cache=shapes)
        agg = (prune_dominated(aggregated_columns(energy, dist, rate * s, cat, raw), energy.objective, True)
               if energy.pools.disaggregation == "allow" else None)
        split = generate_split(energy, dist, rate * s, cat, raw.bounds)
        return bool(solve_combined(energy, agg, split)[0].chosen)

    lo, hi = 0.0, 1.0
    if feasible(1.0):
        lo = 1.0
        while feasible(lo * 2):
            lo *= 2
        hi = lo * 2
    else:
        while hi > 1e-6 and not feasible(hi / 2):
            hi /= 2
        if hi <= 1e-6:
            raw = generate(energy, dist, rate * hi, cat, cache=shapes)
            raise InfeasibleError(_diagnose(energy, raw, generate_split(energy, dist, rate * hi, cat, raw.bounds)))
        lo = hi / 2
    steps = 0
    while (hi - lo) / lo > 1e-3:
        mid = 0.5 * (lo + hi)
        steps += 1
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    raw = generate(energy, dist, rate * lo, cat, cache=shapes)
    out = finish_solve_disagg(energy, base, cat, dist, rate * lo, raw, t0, verbose,
                              {"throughput": {"demand_scale": lo, "arrival_rate": rate * lo, "upper_bound_scale": hi,
                                              "relative_gap": (hi - lo) / lo, "bisection_steps": steps}})
    out["objective"] = "max_throughput"
    return out
