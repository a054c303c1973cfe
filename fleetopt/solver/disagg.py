"""``fleetopt solve`` with ``pools.disaggregation: allow | only``: the ``fleet_disagg``
MILP over aggregated and split-pool columns (``fleetopt.solver.disagg_columns``), the plan
and its comparison with the best aggregated plan (solved too, with ``formulations.fleet``
on the same aggregated columns, and reported as the ``aggregated`` baseline).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from fleetopt.columns import Columns, generate, prune_dominated
from fleetopt.disagg import check_disaggregation, kv_link, phase_serving
from fleetopt.errors import FleetoptError, InfeasibleError, NoPlanInTimeError
from fleetopt.evaluation import evaluate
from fleetopt.plan import Plan, check_plan
from fleetopt.problem import Config, Problem
from fleetopt.solver.baselines import baseline, brief, column_reader, gains
from fleetopt.solver.diagnose import diagnose, no_plan_in_time
from fleetopt.solver.disagg_columns import PhaseConfig, SplitColumns, aggregated_columns, generate_split, prune_phase
from fleetopt.solver.milp import StagedSolve
from fleetopt.solver.stats import solver_stats
from fleetopt.topology import PoolChoice
from formulations import fleet_disagg
from formulations.fleet_disagg import DisaggModelData, Kind
from formulations.highs import SolveResult, solve_matrix, solve_pyomo


def model_data(problem: Problem, agg: Columns | None, split: SplitColumns) -> DisaggModelData:
    """``DisaggModelData`` of the aggregated and phase columns."""
    stock: dict[str, int] = {}
    cfgs: list[Config | PhaseConfig] = [*(agg.configs if agg is not None else []), *split.pre_cfgs, *split.dec_cfgs]
    for cf in cfgs:
        if cf.max_gpus is not None:
            stock[cf.gpu] = min(stock.get(cf.gpu, cf.max_gpus), cf.max_gpus)
    k_agg = Kind.empty() if agg is None or not len(agg) else Kind(
        agg.arc_i, agg.arc_j, [agg.configs[c].gpu for c in agg.cfg], agg.gpus, agg.provisioned_w)
    k_pre = Kind(split.pre.arc_i, split.pre.arc_j, [split.pre_cfgs[c].gpu for c in split.pre.cfg], split.pre.gpus,
                 split.pre.provisioned_w, split.pre.width)
    k_dec = Kind(split.dec.arc_i, split.dec.arc_j, [split.dec_cfgs[c].gpu for c in split.dec.cfg], split.dec.gpus,
                 split.dec.provisioned_w, split.dec.width)
    return DisaggModelData(len(split.bounds) + 1, k_agg, k_pre, k_dec, problem.pools.max_pools, stock,
                           problem.power.cap_w, kv_link(problem.pools.kv_link).same_gpu_type)


def _weights(agg: Columns | None, split: SplitColumns, what: str) -> np.ndarray:
    """A coefficient over x (aggregated), u (prefill) and v (decode) columns, in that order."""
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


def solve_combined(problem: Problem, agg: Columns | None, split: SplitColumns,
                   verbose: bool = False) -> tuple[SolveResult, DisaggModelData]:
    """The ``fleet_disagg`` MILP for the instance's objective (fixed demand), then the
    tie-break among plans within the proven gap, both within ``solver.time_limit_s``
    together (the tie-break is skipped, with a note, when nothing is left of it);
    ``chosen`` indexes x, u, v."""
    s = problem.solver
    deadline = time.perf_counter() + s.time_limit_s
    data = model_data(problem, agg, split)
    w = _weights(agg, split, "cost_h" if problem.objective == "min_cost" else "energy_w")

    def run(weights: np.ndarray, start: list[int] | None = None) -> SolveResult:
        """One MILP over the combined model within what is left of the time limit."""
        left = max(deadline - time.perf_counter(), 1e-3)
        if s.interface == "pyomo":
            return solve_pyomo(fleet_disagg.build(data, weights, "min"), left, s.mip_gap, s.threads, s.seed, verbose,
                               s.presolve)
        return solve_matrix(fleet_disagg.constraint_rows(data), data.n_vars(), weights, "min", left, s.mip_gap,
                            s.threads, s.seed, verbose, s.presolve,
                            fleet_disagg.start_values(data, start) if start else None)

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


def topology_of(problem: Problem, agg: Columns | None, split: SplitColumns | None,
                chosen: list[int]) -> list[PoolChoice]:
    """The chosen columns (indices over aggregated, prefill, decode columns) as a topology
    (a split range as one ``pd`` choice); a range without traffic joins the next one."""
    na = 0 if agg is None else len(agg)
    npre = 0 if split is None else len(split.pre)
    ranges: dict[int, tuple[int, int, PoolChoice]] = {}       # arc tail -> (head, instances, choice)
    pre_on: dict[tuple[int, int], int] = {}
    dec_on: dict[tuple[int, int], int] = {}
    for c in chosen:
        if c < na:
            assert agg is not None
            cf = agg.configs[agg.cfg[c]]
            up = agg.bounds[agg.arc_j[c] - 1]
            ranges[int(agg.arc_i[c])] = (int(agg.arc_j[c]), int(agg.instances[c]), PoolChoice(
                up, cf.gpu, cf.tp, cf.admission, phase_serving(problem.catalog, cf.gpu, cf.cap)))
        elif c < na + npre:
            assert split is not None
            k = c - na
            pre_on[(int(split.pre.arc_i[k]), int(split.pre.arc_j[k]))] = k
        else:
            assert split is not None
            k = c - na - npre
            dec_on[(int(split.dec.arc_i[k]), int(split.dec.arc_j[k]))] = k
    for a, kp in pre_on.items():
        assert split is not None
        kd = dec_on[a]
        pcf, dcf = split.pre_cfgs[split.pre.cfg[kp]], split.dec_cfgs[split.dec.cfg[kd]]
        choice = PoolChoice(split.bounds[a[1] - 1], dcf.gpu, dcf.tp, dcf.admission,
                            phase_serving(problem.catalog, dcf.gpu, dcf.cap), prefill_gpu=pcf.gpu, prefill_tp=pcf.tp,
                            prefill_serving=phase_serving(problem.catalog, pcf.gpu, pcf.cap))
        ranges[a[0]] = (a[1], int(split.pre.instances[kp] + split.dec.instances[kd]), choice)
    seq = [ranges[i] for i in sorted(ranges)]
    if len(seq) > 1:
        kept = [r for r in seq[:-1] if r[1] > 0] + [seq[-1]]
        if seq[-1][1] == 0 and len(kept) > 1:
            last = kept.pop()
            kept[-1] = (kept[-1][0], kept[-1][1], dataclasses.replace(kept[-1][2], upper=last[2].upper))
        seq = kept
    return [r[2] for r in seq]


def _diagnose(problem: Problem, raw: Columns, split: SplitColumns) -> str:
    """Why no plan exists: the aggregated diagnosis (``allow``) and the split pools'."""
    if problem.pools.disaggregation == "allow" and len(raw.whole()):
        agg = diagnose(problem, raw)
    else:
        agg = None
    errs = [v for v in split.errors.values()]
    if not len(split.pre) or not len(split.dec):
        why = f"no split pool meets the SLOs: {errs[0]}" if errs else "no split pool candidates"
        return why if agg is None else f"{agg}; {why}"
    return agg or ("no feasible plan of split pools within the power cap and inventories"
                   + (f" (e.g. {errs[0]})" if errs else ""))


def _aggregated_optimum(problem: Problem, raw: Columns, agg_all: Columns, verbose: bool) -> Plan | None:
    """The best aggregated plan (``formulations.fleet`` on the aggregated columns, the capped
    ones included)."""
    cols = prune_dominated(agg_all, problem.objective, problem.power.cap_w is not None)
    if not len(cols):
        return None
    res, _ = StagedSolve(problem, cols, verbose).run()
    if not res.chosen:
        return None
    topo = topology_of(problem, cols, None, res.chosen)
    return evaluate(problem, topo, sized=column_reader(problem, raw))


def finish_disagg(problem: Problem, raw: Columns, t0: float, verbose: bool = False) -> Plan:
    """Solve over aggregated and split columns and report (``fleetopt.solver.finish``'s
    plan, with the ``aggregated`` baseline and a ``disaggregation`` section), checked."""
    check_disaggregation(problem)
    capped = problem.power.cap_w is not None
    allow = problem.pools.disaggregation == "allow"
    agg_all = aggregated_columns(problem, problem.rate, raw)
    agg = prune_dominated(agg_all, problem.objective, capped) if allow else None
    split = generate_split(problem, problem.rate, raw.bounds)
    link = kv_link(problem.pools.kv_link)
    raw_sizes = (len(split.pre), len(split.dec))
    split = dataclasses.replace(split, pre=prune_phase(split.pre, split.pre_cfgs, problem.objective, capped,
                                                       link.same_gpu_type),
                                dec=prune_phase(split.dec, split.dec_cfgs, problem.objective, capped,
                                                link.same_gpu_type))
    t_cols = time.perf_counter() - t0
    res, _ = solve_combined(problem, agg, split, verbose)
    if not res.chosen:
        if res.status == "time_limit":
            raise NoPlanInTimeError(no_plan_in_time(problem))
        raise InfeasibleError(_diagnose(problem, raw, split))
    topo = topology_of(problem, agg, split, res.chosen)
    plan = evaluate(problem, topo, sized=column_reader(problem, raw))
    m = len(raw.bounds)
    homog = baseline(problem, raw, [m])
    pb = problem.pools.paper_boundary
    two = baseline(problem, raw, [raw.bounds.index(pb) + 1, m]) if pb is not None and pb in raw.bounds[:-1] else None
    best_agg = brief(_aggregated_optimum(problem, raw, agg_all, verbose))
    split_ranges = [p for p in topo if p.split]
    out = plan.replace(
        kind="solve", objective=problem.objective,
        baselines={"homogeneous": homog, "two_pool_paper": two, "aggregated": best_agg},
        gains={"vs_homogeneous": gains(plan, homog), "vs_two_pool_paper": gains(plan, two),
               "vs_aggregated": gains(plan, best_agg)},
        disaggregation={"mode": problem.pools.disaggregation, "kv_link": link.id, "split_ranges": len(split_ranges),
                        "ranges": len(topo),
                        "phases": [{"upper": p.upper, "prefill": f"{p.prefill_gpu}x{p.prefill_tp}",
                                    "decode": f"{p.gpu}x{p.tp}"} for p in split_ranges]},
        solver=solver_stats(problem, res, t0, t_cols, 0, "fleet_disagg"),
        search_space={"boundaries": raw.bounds,
                      "configs": [f"{c.gpu}x{c.tp}:{c.admission}" + (f"@{c.cap:g}tdp" if c.cap < 1 else "")
                                  for c in agg_all.configs] if allow else [],
                      "prefill_configs": [c.label() for c in split.pre_cfgs],
                      "decode_configs": [c.label() for c in split.dec_cfgs],
                      "max_pools": problem.pools.max_pools,
                      "columns": (len(agg_all) if allow else 0) + sum(raw_sizes),
                      "columns_after_pruning": (len(agg) if agg is not None else 0) + len(split.pre) + len(split.dec),
                      "infeasible_columns": len([k for k in raw.errors if not isinstance(k, int)])
                      + len([k for k in split.errors if len(k) == 4])})
    check_plan(problem, out, raw.bounds[-1])
    return out


def solve_disagg(problem: Problem, t0: float, verbose: bool = False, workers: int = 1) -> Plan:
    """``solve`` with disaggregation on; ``max_throughput`` bisects the demand scale (to
    0.1 %) on the combined model, as ``fleetopt.solver.throughput`` does on the aggregated one."""
    check_disaggregation(problem)
    if problem.objective != "max_throughput":
        return finish_disagg(problem, generate(problem, workers=workers), t0, verbose)
    if problem.power.cap_w is None:
        raise FleetoptError("objective: max_throughput needs power.facility_cap_mw")
    energy = problem.with_objective("max_tokens_per_joule")
    rate = problem.rate
    shapes: dict[Any, Any] = {}

    def feasible(s: float) -> bool:
        """Whether a plan exists at s x the arrival rate."""
        raw = generate(energy, rate * s, cache=shapes)
        agg = (prune_dominated(aggregated_columns(energy, rate * s, raw), energy.objective, True)
               if energy.pools.disaggregation == "allow" else None)
        split = generate_split(energy, rate * s, raw.bounds)
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
            raw = generate(energy, rate * hi, cache=shapes)
            raise InfeasibleError(_diagnose(energy, raw, generate_split(energy, rate * hi, raw.bounds)))
        lo = hi / 2
    steps = 0
    while (hi - lo) / lo > 1e-3:
        mid = 0.5 * (lo + hi)
        steps += 1
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    at = energy.with_rate(rate * lo)
    raw = generate(at, cache=shapes)
    plan = finish_disagg(at, raw, t0, verbose)
    return plan.replace(objective="max_throughput",
                        throughput={"demand_scale": lo, "arrival_rate": rate * lo, "upper_bound_scale": hi,
                                    "relative_gap": (hi - lo) / lo, "bisection_steps": steps})
