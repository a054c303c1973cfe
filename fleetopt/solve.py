"""``fleetopt solve``: columns -> MILP (formulations/fleet.py) -> plan, baselines, gains.

The plan is re-evaluated with ``fleetopt.fleet.evaluate`` (the same code that sized its
columns), so what is reported is what ``fleetopt evaluate`` gives for the plan's topology.
Baselines are read from the same columns: ``homogeneous`` is the best single config on
one pool of the largest window; ``two_pool_paper`` is the best single config on the
instance's ``paper_boundary`` split.  Infeasible instances raise ``InfeasibleError`` with a
diagnosis naming the binding constraint and by how much.

The MILP stages (upper bound, elimination, optimum, tie-break, Dinkelbach) are in
``fleetopt.milp`` and share ``solver.time_limit_s``; a time-out with no plan raises
``NoPlanInTimeError``.  ``solver.variables`` and ``solver.constraints`` are the size of the
optimum stage's model, after elimination.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from fleetopt.errors import FleetoptError, InfeasibleError, NoPlanInTimeError
from fleetopt.bounds import best_path
from fleetopt.columns import Columns, generate, prune_dominated
from fleetopt.fleet import PoolChoice, build_workload, evaluate
from fleetopt.instance import Instance
from fleetopt.milp import StagedSolve
from fleetopt.render import power_text, power_unit
from fleetopt.records import replace


def _power_shortfall(need_w: float, cap_w: float, inst: Instance) -> str:
    """The power-cap diagnosis: the shortfall need - cap in W, kW or MW (4 significant
    digits) and relative to the cap; need and cap in the cap's unit with enough decimals
    that their difference shows (at least 2 significant digits of it) when they share
    that unit, each in its own unit otherwise."""
    short = need_w - cap_w
    unit = power_unit(cap_w)
    if power_unit(need_w) == unit:
        dec = max(3, 1 - math.floor(math.log10(short / unit[0])))
        need_s, cap_s = power_text(need_w, decimals=dec, unit=unit), power_text(cap_w, decimals=dec, unit=unit)
    else:
        need_s, cap_s = power_text(need_w), power_text(cap_w)
    pct = 100 * short / cap_w
    return (f"power cap short by {power_text(short)}, {pct:.3g} % of the {cap_s} cap " if pct < 1000 else
            f"power cap short by {power_text(short)}, {pct:.0f} % of the {cap_s} cap ") + (
            f"(power.facility_cap_mw = {inst.power.facility_cap_mw:g}): the least-power plan needs {need_s} facility "
            f"power ({inst.power.provisioning} basis, PUE {inst.power.pue:g})")


def diagnose(inst: Instance, cols: Columns) -> str:
    """Why no plan exists: the binding constraint and by how much (read on the pools of one
    config each; mixing configs only adds power or GPUs to a range)."""
    cols = cols.whole()
    errs = cols.errors
    cfg_errs = [v for k, v in errs.items() if isinstance(k, int)]
    if not len(cols):
        if cfg_errs and len(cfg_errs) == len(cols.configs):
            return f"no GPU type fits the model: {cfg_errs[0]}"
        pool_errs = [v for k, v in errs.items() if not isinstance(k, int)]
        return f"SLO unreachable for any pool: {pool_errs[0] if pool_errs else 'no candidate pools'}"
    K = inst.pools.max_pools
    if not math.isfinite(best_path(cols, np.zeros(len(cols)), K)):
        pool_errs = [v for k, v in errs.items() if not isinstance(k, int)]
        last = [v for k, v in errs.items() if not isinstance(k, int) and k[1] == len(cols.bounds)]
        why = (last or pool_errs or ["no candidate pools cover the range"])[0]
        return f"no plan of at most {K} pools meets the SLOs over the whole length range: {why}"
    if inst.power.facility_cap_mw is not None:
        need = best_path(cols, cols.provisioned_w, K)
        cap = inst.power.facility_cap_mw * 1e6
        if need > cap:
            return _power_shortfall(need, cap, inst)
    limits = {c.gpu: c.max_gpus for c in cols.configs if c.max_gpus is not None}
    if limits:
        need = best_path(cols, cols.gpus.astype(float), K)
        return (f"GPU inventory too small: the plan with fewest GPUs needs {need:.0f} GPUs; limits "
                + ", ".join(f"{g} {n}" for g, n in sorted(limits.items()))
                + (" (with the power cap)" if inst.power.facility_cap_mw is not None else ""))
    return "no feasible plan (power cap and inventory together)"


def _topology(cols: Columns, chosen: list[int], merge_empty: bool = True) -> list[PoolChoice]:
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


def _reader(inst: Instance, cols: Columns):
    """``evaluate``'s ``sized``: reads a pool from the columns (same code, same traffic)
    instead of sizing it again.  Not with compress-and-route, where a column's traffic
    assumes the pool above covers (B, gamma B] and ``evaluate`` routes the real plan."""
    if inst.pools.compress is not None:
        return None
    node = {b: k + 1 for k, b in enumerate(cols.bounds)}
    node[0] = 0
    cfg = {(c.gpu, c.tp, c.admission): k for k, c in enumerate(cols.configs)}

    def read(lo, hi, gpu, tp, admission, share=1.0):
        i, j, c = node.get(int(lo)), node.get(int(hi)), cfg.get((gpu, tp, admission))
        k = round(share * cols.grid)
        if None in (i, j, c) or abs(k - share * cols.grid) > 1e-9:
            return None
        return cols.pool_sizing(i, j, c, k)
    return read


def _baseline(inst, base, cols: Columns, uppers_idx: list[int], dist, rate, catalog):
    """Best single config on a fixed boundary set (indices into nodes), by the objective."""
    read = _reader(inst, cols)
    cols = cols.whole()
    arcs = list(zip([0] + uppers_idx[:-1], uppers_idx))
    best = None
    for c, cf in enumerate(cols.configs):
        sel = [np.flatnonzero((cols.arc_i == i) & (cols.arc_j == j) & (cols.cfg == c)) for i, j in arcs]
        if any(len(x) == 0 for x in sel):
            continue
        idx = [int(x[0]) for x in sel]
        prov = cols.provisioned_w[idx].sum()
        if inst.power.facility_cap_mw is not None and prov > inst.power.facility_cap_mw * 1e6:
            continue
        gpus = cols.gpus[idx].sum()
        if cf.max_gpus is not None and gpus > cf.max_gpus:
            continue
        if inst.objective == "min_cost":
            key = cols.cost_h[idx].sum()
        else:
            key = -cols.tokens_s[idx].sum() / max(cols.energy_w[idx].sum(), 1e-12)
        if best is None or key < best[0]:
            best = (key, cf)
    if best is None:
        return None
    cf = best[1]
    topo = [PoolChoice(cols.bounds[j - 1], cf.gpu, cf.tp, cf.admission) for j in uppers_idx]
    res = evaluate(inst, base, topo, catalog=catalog, workload=(dist, rate), sized=read)
    res["topology"] = ",".join(p.spec() for p in topo)
    return res


def _gains(plan: dict, base: dict | None) -> dict | None:
    if base is None:
        return None
    f, b = plan["fleet"], base["fleet"]
    rel = lambda a, c: (a / c - 1.0) if c else None  # noqa: E731
    return {"tokens_per_joule": rel(f["tokens_per_joule"], b["tokens_per_joule"]),
            "gpus_saved": b["gpus"] - f["gpus"], "it_power_saved_kw": b["it_power_kw"] - f["it_power_kw"],
            "cost_per_hour_saved": b["cost_per_hour"] - f["cost_per_hour"]}


def solve_instance(inst: Instance, base: Path, catalog=None, verbose: bool = False, workers: int = 1) -> dict:
    """Solve the instance; returns the plan (pools, fleet), baselines, gains and solver facts."""
    from fleetopt.catalog import load_catalog

    t0 = time.perf_counter()
    if inst.pools.split_grid > 1 and inst.pools.compress is not None:
        raise FleetoptError("pools.split_grid: mixed pools and pools.compress cannot be combined (a compressed "
                            "range's columns assume one pool above it)")
    cat = catalog or load_catalog()
    dist, rate = build_workload(inst, base)
    if inst.pools.disaggregation != "off":           # split prefill/decode pools: fleetopt.disagg_solve
        from fleetopt.disagg_solve import solve_disagg

        return solve_disagg(inst, base, cat, dist, rate, t0, verbose, workers)
    if inst.objective == "max_throughput":
        return _max_throughput(inst, base, cat, dist, rate, verbose, t0)
    raw = generate(inst, dist, rate, cat, workers=workers)
    return finish_solve(inst, base, cat, dist, rate, raw, t0, verbose)


def finish_solve(inst, base, cat, dist, rate, raw: Columns, t0: float, verbose: bool = False,
                 extra: dict | None = None) -> dict:
    """Prune, solve and report, from already sized columns (``fleetopt sweep`` reuses them)."""
    if inst.pools.disaggregation != "off":
        from fleetopt.disagg_solve import finish_solve_disagg

        return finish_solve_disagg(inst, base, cat, dist, rate, raw, t0, verbose, extra)
    capped = inst.power.facility_cap_mw is not None
    cols = prune_dominated(raw, inst.objective, capped)
    t_cols = time.perf_counter() - t0
    if not len(cols):
        raise InfeasibleError(diagnose(inst, raw))
    res, dinkelbach = StagedSolve(inst, cols, verbose).run()
    if not res.chosen:
        if res.status == "time_limit":
            raise NoPlanInTimeError(_no_plan_in_time(inst))
        raise InfeasibleError(diagnose(inst, raw))
    topo = _topology(cols, res.chosen, merge_empty=inst.pools.compress is None)
    plan = evaluate(inst, base, topo, catalog=cat, workload=(dist, rate), sized=_reader(inst, raw))
    m = len(raw.bounds)
    homog = _baseline(inst, base, raw, [m], dist, rate, cat)
    pb = inst.pools.paper_boundary
    two = None
    if pb is not None and pb in raw.bounds[:-1]:
        two = _baseline(inst, base, raw, [raw.bounds.index(pb) + 1, m], dist, rate, cat)
    out = {"instance": inst.name, "mode": inst.mode, "model": inst.model, "objective": inst.objective,
           "topology": ",".join(p.spec() for p in topo), "pools": plan["pools"], "fleet": plan["fleet"],
           "baselines": {"homogeneous": _brief(homog), "two_pool_paper": _brief(two)},
           "gains": {"vs_homogeneous": _gains(plan, homog), "vs_two_pool_paper": _gains(plan, two)},
           "solver": {"name": ("HiGHS via pyomo.contrib.solver.solvers.highs.Highs" if inst.solver.interface == "pyomo"
                               else "HiGHS via highspy (the model's rows as a matrix)"), "status": res.status,
                      "objective": res.objective, "bound": res.bound, "gap": res.gap,
                      "seconds": time.perf_counter() - t0, "solve_seconds": res.seconds,
                      "column_seconds": t_cols, "variables": res.variables, "constraints": res.constraints,
                      "dinkelbach_iterations": dinkelbach, "notes": res.notes},
           "search_space": {"boundaries": raw.bounds, "configs": [f"{c.gpu}x{c.tp}:{c.admission}" for c in raw.configs],
                            "max_pools": inst.pools.max_pools, "columns": len(raw), "columns_after_pruning": len(cols),
                            "infeasible_columns": len([k for k in raw.errors if not isinstance(k, int)])}}
    if extra:
        out.update(extra)
    return out


def _no_plan_in_time(inst: Instance) -> str:
    return (f"no plan found within the time limit (solver.time_limit_s = {inst.solver.time_limit_s:g} s, the limit "
            f"of the whole solve); raise it")


def _brief(res: dict | None) -> dict | None:
    if res is None:
        return None
    return {"topology": res["topology"], **res["fleet"]}


def _max_throughput(inst, base, cat, dist, rate, verbose, t0):
    """Largest demand scale s (to 0.1 %) for which a plan fits the power cap, by bisection;
    the plan at that scale minimises energy."""
    if inst.power.facility_cap_mw is None:
        raise FleetoptError("objective: max_throughput needs power.facility_cap_mw")
    energy = replace(inst, objective="max_tokens_per_joule")
    shapes: dict = {}                   # routed traffic and pool shapes do not depend on the demand

    def feasible(s: float):
        raw = generate(energy, dist, rate * s, cat, cache=shapes)
        cols = prune_dominated(raw, "max_tokens_per_joule", True)
        if not len(cols):
            return None, raw
        res, _ = StagedSolve(energy, cols, False).run()
        if not res.chosen and res.status == "time_limit":       # undecided: not a proof of infeasibility
            raise NoPlanInTimeError(_no_plan_in_time(energy) + f" (demand scale {s:.4g} of the bisection)")
        return (raw if res.chosen else None), raw

    lo, hi = 0.0, 1.0
    ok, raw = feasible(1.0)
    if ok is not None:
        lo = 1.0
        while True:
            hi = lo * 2
            ok2, _ = feasible(hi)
            if ok2 is None:
                break
            lo = hi
    else:
        while ok is None and hi > 1e-6:
            hi /= 2
            ok, raw = feasible(hi)
        if ok is None:
            raise InfeasibleError(diagnose(energy, raw))
        lo, hi = hi, hi * 2
    steps = 0
    while (hi - lo) / lo > 1e-3:
        mid = 0.5 * (lo + hi)
        steps += 1
        if feasible(mid)[0] is not None:
            lo = mid
        else:
            hi = mid
    raw, _ = feasible(lo)
    out = finish_solve(energy, base, cat, dist, rate * lo, raw, t0, verbose,
                       {"throughput": {"demand_scale": lo, "arrival_rate": rate * lo, "upper_bound_scale": hi,
                                  "relative_gap": (hi - lo) / lo, "bisection_steps": steps}})
    out["objective"] = "max_throughput"
    return out
