"""Energy at scale: a fleet's energy per query at the IT and the facility level, its daily
and yearly energy for a query volume, electricity cost and emissions (``fleetopt energy``).

Accounting (each figure an energy over one day divided by the day's queries):

* GPUs: the serving instances' GPUs at each hour's planned operating point (power at the
  mean batch = utilisation x slots, as the sizing layer takes it, so the headroom the plan
  keeps under its utilisation cap is in this figure);
* host: the host share (CPUs, NICs, fans: ``power.host_w_per_node`` / 8 per GPU) of the
  serving instances;
* idle instances: with a 24-hour load profile the fleet is sized for the busiest hour;
  in quieter hours the instances not needed either idle (GPU idle W + host share) or are
  switched off (0 W), as ``workload.load_profile.idle_instances`` says;
* IT = GPUs + host + idle instances (what the servers draw); facility = IT x PUE.

Per-query quantiles share each pool's facility energy among its queries in proportion
to the slot-time they hold (prefill + output x step), so their weighted mean is the
fleet's mean Wh per query exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetopt.errors import FleetoptError
from fleetopt.evaluation import evaluate
from fleetopt.problem import Problem
from fleetopt.solver import solve
from fleetopt.topology import PoolChoice, parse_topology, topology_spec
from fleetopt.units import J_PER_WH

HOURS_PER_DAY = 24
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
DAYS_PER_YEAR = 365.0


# ---- pure unit conversions --------------------------------------------------------------

def wh_per_query(power_w: float, queries_per_s: float) -> float:
    """Energy per query of a steady power draw: Wh/query = W / (queries/s) / 3600 J/Wh."""
    return power_w / queries_per_s / J_PER_WH if queries_per_s > 0 else math.inf


def wh_from_w_hours(power_w: float, hours: float) -> float:
    """Energy of a steady draw: Wh = W x h."""
    return power_w * hours


def facility_w(it_w: float, pue: float) -> float:
    """Facility power from IT power: W_facility = W_IT x PUE (PUE's definition)."""
    return it_w * pue


def mwh_per_day(wh_per_q: float, queries_per_day: float) -> float:
    """Daily energy: MWh/day = Wh/query x queries/day / 1e6 Wh/MWh."""
    return wh_per_q * queries_per_day / 1e6


def gwh_per_year(mwh_day: float, days: float = DAYS_PER_YEAR) -> float:
    """Yearly energy: GWh/year = MWh/day x 365 d / 1000 MWh/GWh."""
    return mwh_day * days / 1e3


def usd_for_mwh(mwh: float, usd_per_mwh: float) -> float:
    """Electricity cost: USD = MWh x USD/MWh."""
    return mwh * usd_per_mwh


def tco2_for_mwh(mwh: float, gco2_per_kwh: float) -> float:
    """Emissions: t CO2 = MWh x 1000 kWh/MWh x gCO2/kWh / 1e6 g/t = MWh x gCO2/kWh / 1000."""
    return mwh * gco2_per_kwh / 1e3


def hourly_rates_per_s(queries_per_day: float, weights: list[float] | None) -> np.ndarray:
    """Each hour's arrival rate: q/s_h = Q x w_h / sum(w) / 3600 s (hour h's share of the
    day's queries over its seconds); a flat day (no weights) is Q / 86400 every hour."""
    w = np.ones(HOURS_PER_DAY) if weights is None else np.asarray(weights, float)
    if w.shape != (HOURS_PER_DAY,) or (w < 0).any() or w.sum() <= 0:
        raise FleetoptError("workload.load_profile.hourly_weights: expected 24 weights >= 0, not all 0")
    return queries_per_day * w / w.sum() / SECONDS_PER_HOUR


def day_queries_from_peak(peak_rate_per_s: float, weights: list[float] | None) -> float:
    """Queries in a day whose busiest hour runs at ``peak``: Q = peak x 3600 x sum(w) / max(w)."""
    if weights is None:
        return peak_rate_per_s * SECONDS_PER_DAY
    w = np.asarray(weights, float)
    return peak_rate_per_s * SECONDS_PER_HOUR * float(w.sum() / w.max())


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of a weighted sample: the smallest value whose cumulative weight reaches q."""
    o = np.argsort(values, kind="stable")
    v, c = np.asarray(values, float)[o], np.cumsum(np.asarray(weights, float)[o])
    c /= c[-1]
    return [float(v[min(int(np.searchsorted(c, q - 1e-12)), len(v) - 1)]) for q in qs]


# ---- the fleet over a day -----------------------------------------------------------------

@dataclass(frozen=True)
class Hour:
    """One hour of the day: power by component (W) at its arrival rate."""

    queries_per_s: float
    serving_instances: int
    idle_instances: int
    gpu_w: float
    host_w: float
    idle_w: float

    @property
    def it_w(self) -> float:
        """IT power, W: GPUs + hosts + idle instances."""
        return self.gpu_w + self.host_w + self.idle_w


def _hour(problem: Problem, topology: Sequence[PoolChoice], admission: str | None, rate: float,
          peak_pools: list[dict[str, Any]], idle_w_per_instance: list[float],
          switch_off: bool) -> tuple[Hour, list[float]]:
    """The hour at ``rate``: the plan's pools sized for it (at most the peak-hour counts),
    the rest idle or off.  Also each pool's IT W (serving + its idle instances)."""
    host_per_gpu = problem.power.host_w_per_gpu
    pools: list[dict[str, Any]]
    if rate > 0:
        pools = list(evaluate(problem, topology, admission, rate=rate).pool_rows)
    else:
        pools = [{"instances": 0, "gpus": 0, "power_per_gpu_w": 0.0} for _ in peak_pools]
    gpu_w = host_w = idle_w = 0.0
    serving = idle = 0
    per_pool = []
    for p, pk, iw in zip(pools, peak_pools, idle_w_per_instance):
        n = min(int(p["instances"]), int(pk["instances"]))
        gpus = p["gpus"] * n / p["instances"] if p["instances"] else 0.0
        g, h = gpus * p["power_per_gpu_w"], gpus * host_per_gpu
        spare = int(pk["instances"]) - n
        i = 0.0 if switch_off else spare * iw
        gpu_w, host_w, idle_w = gpu_w + g, host_w + h, idle_w + i
        serving, idle = serving + n, idle + (0 if switch_off else spare)
        per_pool.append(g + h + i)
    return Hour(rate, serving, idle, gpu_w, host_w, idle_w), per_pool


def energy_report(problem: Problem, topology: Sequence[PoolChoice], queries_per_day: float | None = None,
                  usd_per_mwh: float | None = None, gco2_per_kwh: float | None = None, admission: str | None = None,
                  keep_queries: bool = False) -> dict[str, Any]:
    """Energy of a fleet of the given topology over one day.  Instance counts are sized for
    the busiest hour (the instance's rate, or ``queries_per_day`` spread by the load
    profile); each hour is sized at its own rate and the rest of the peak fleet idles or
    is off.  E_day = sum_h P_h x 1 h; Wh/query = E_day / Q; facility = IT x PUE."""
    inst = problem.instance
    if any(c.split for c in topology):
        raise FleetoptError("energy: split (pd) pools are not priced over a day yet; fleetopt evaluate and solve give "
                            "their energy per query at the planned rate")
    for name, v in (("queries-per-day", queries_per_day), ("usd-per-mwh", usd_per_mwh),
                    ("gco2-per-kwh", gco2_per_kwh)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise FleetoptError(f"--{name}: must be a number >= 0, got {v:g}")
    if queries_per_day is not None and queries_per_day <= 0:
        raise FleetoptError(f"--queries-per-day: must be > 0, got {queries_per_day:g}")
    dist, rate = problem.dist, problem.rate
    lp = inst.workload.load_profile
    weights = list(lp.hourly_weights) if lp is not None else None
    switch_off = lp is not None and lp.idle_instances == "switch_off"
    q_day = day_queries_from_peak(rate, weights) if queries_per_day is None else float(queries_per_day)
    rates = hourly_rates_per_s(q_day, weights)
    peak = float(rates.max())
    pue = problem.power.pue

    peak_pools = list(evaluate(problem, topology, admission, rate=peak).pool_rows)
    idle_w_inst = []
    for choice, p in zip(topology, peak_pools):
        prof = problem.profile(choice.gpu, choice.tp, choice.serving)
        gp = p["gpus"] / p["instances"] if p["instances"] else prof.gpus_per_instance
        idle_w_inst.append(gp * (prof.idle_power_w() + problem.power.host_w_per_gpu))

    cache: dict[float, tuple[Hour, list[float]]] = {}
    hours, pool_wh = [], np.zeros(len(peak_pools))
    for r in rates:
        key = round(float(r), 12)
        if key not in cache:
            cache[key] = _hour(problem, topology, admission, float(r), peak_pools, idle_w_inst, switch_off)
        h, per_pool = cache[key]
        hours.append(h)
        pool_wh += np.asarray(per_pool) * 1.0         # W x 1 h

    gpu_wh = sum(wh_from_w_hours(h.gpu_w, 1.0) for h in hours)
    host_wh = sum(wh_from_w_hours(h.host_w, 1.0) for h in hours)
    idle_wh = sum(wh_from_w_hours(h.idle_w, 1.0) for h in hours)
    it_wh = gpu_wh + host_wh + idle_wh
    fac_wh = facility_w(it_wh, pue)
    per_q = {k: v / q_day for k, v in (("gpu", gpu_wh), ("host", host_wh), ("idle", idle_wh), ("it", it_wh),
                                        ("facility", fac_wh))}
    mwh_fac, mwh_it = fac_wh / 1e6, it_wh / 1e6
    q_wh, q_w = query_energies_wh(problem, topology, peak_pools, pool_wh * pue, q_day)
    quant = weighted_quantiles(q_wh, q_w, (0.25, 0.5, 0.75)) if q_wh.size else [0.0, 0.0, 0.0]
    out_tokens = float(dist.mean_output)
    res = {
        "instance": inst.name, "model": inst.model, "mode": inst.mode,
        "topology": topology_spec(topology),
        "pue": pue, "host_w_per_node": inst.power.host_w_per_node,
        "queries_per_day": q_day, "mean_queries_per_s": q_day / SECONDS_PER_DAY, "peak_queries_per_s": peak,
        "mean_input_tokens": float(dist.mean_input), "mean_output_tokens": out_tokens,
        "output_scale": inst.workload.output_scale,
        "load_profile": None if lp is None else {"hourly_weights": weights, "idle_instances": lp.idle_instances},
        "instances_peak": int(sum(p["instances"] for p in peak_pools)),
        "gpus_peak": int(sum(p["gpus"] for p in peak_pools)),
        "utilization_peak": (sum(p["utilization"] * p["instances"] for p in peak_pools)
                             / max(1, sum(p["instances"] for p in peak_pools))),
        "wh_per_query_gpu": per_q["gpu"], "wh_per_query_host": per_q["host"],
        "wh_per_query_idle_instances": per_q["idle"],
        "wh_per_query_it": per_q["it"], "wh_per_query_facility": per_q["facility"],
        "wh_per_query_facility_p25": quant[0], "wh_per_query_facility_p50": quant[1],
        "wh_per_query_facility_p75": quant[2],
        "j_per_output_token_facility": per_q["facility"] * J_PER_WH / out_tokens,
        "mwh_per_day_it": mwh_it, "mwh_per_day": mwh_fac,
        "gwh_per_year_it": gwh_per_year(mwh_it), "gwh_per_year": gwh_per_year(mwh_fac),
        "mean_facility_power_mw": mwh_fac / HOURS_PER_DAY,
        "peak_facility_power_mw": max(facility_w(h.it_w, pue) for h in hours) / 1e6,
    }
    if usd_per_mwh is not None:
        res.update(usd_per_mwh=usd_per_mwh, usd_per_day=usd_for_mwh(mwh_fac, usd_per_mwh),
                   usd_per_year=usd_for_mwh(mwh_fac, usd_per_mwh) * DAYS_PER_YEAR,
                   usd_per_million_queries=usd_for_mwh(mwh_fac, usd_per_mwh) / q_day * 1e6)
    if gco2_per_kwh is not None:
        res.update(gco2_per_kwh=gco2_per_kwh, tco2_per_day=tco2_for_mwh(mwh_fac, gco2_per_kwh),
                   tco2_per_year=tco2_for_mwh(mwh_fac, gco2_per_kwh) * DAYS_PER_YEAR,
                   gco2_per_query=tco2_for_mwh(mwh_fac, gco2_per_kwh) * 1e6 / q_day)
    res["pools"] = [{"lo_tokens": p["lo_tokens"], "hi_tokens": p["hi_tokens"], "gpu": p["gpu"], "tp": p["tp"],
                     "split": p["split"], "instances": p["instances"], "gpus": p["gpus"],
                     "utilization": p["utilization"], "batch": p["batch"], "slots": p["slots"],
                     "power_per_gpu_w": p["power_per_gpu_w"], "it_power_kw": p["it_power_kw"],
                     "mwh_per_day": float(pw) * pue / 1e6}
                    for p, pw in zip(peak_pools, pool_wh)]
    res["hours"] = [{"hour": k, "queries_per_s": h.queries_per_s, "serving_instances": h.serving_instances,
                     "idle_instances": h.idle_instances, "it_power_kw": h.it_w / 1e3,
                     "facility_power_kw": facility_w(h.it_w, pue) / 1e3,
                     "mwh": facility_w(h.it_w, pue) / 1e6} for k, h in enumerate(hours)]
    if keep_queries:            # the per-query distribution (benchmarks blend models with it)
        res["queries"] = {"wh_facility": q_wh, "weight": q_w}
    return res


def query_energies_wh(problem: Problem, topology: Sequence[PoolChoice], pools: list[dict[str, Any]],
                      pool_facility_wh_day: np.ndarray, queries_per_day: float) -> tuple[np.ndarray, np.ndarray]:
    """Facility Wh of each kind of query and its weight (share of the queries): each pool's
    daily facility energy shared among its queries by the slot-time they hold,
    E_i = E_pool / Q_pool x S_i / E_pool[S], S_i = prefill(in_i) + out_i x step (the pool's
    step at its slot-capped batch); so sum_i w_i E_i = E_day / Q exactly."""
    vals, wts = [], []
    for choice, (_, traffic, _), p, e_wh in zip(topology, problem.router.route_members(topology),
                                                pools, pool_facility_wh_day):
        w = traffic.w * choice.share
        if w.sum() <= 0:
            continue
        prof = problem.profile(choice.gpu, choice.tp, choice.serving)
        s = np.asarray(prof.prefill_ms(traffic.inp), float) + traffic.out * p["tpot_p99_ms"]
        mean_s = float(w @ s / w.sum())
        q_pool = queries_per_day * float(w.sum())
        vals.append(e_wh / q_pool * s / mean_s)
        wts.append(w)
    if not vals:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(vals), np.concatenate(wts)


def solve_for_peak(problem: Problem, queries_per_day: float | None = None, workers: int = 1) -> list[PoolChoice]:
    """The plan ``fleetopt solve`` gives for the busiest hour (the instance's rate, or
    ``queries_per_day`` spread by the load profile): its topology as plan.json writes it."""
    if queries_per_day is not None:
        if not queries_per_day > 0:
            raise FleetoptError(f"--queries-per-day: must be > 0, got {queries_per_day:g}")
        lp = problem.instance.workload.load_profile
        peak = float(hourly_rates_per_s(queries_per_day, list(lp.hourly_weights) if lp else None).max())
        problem = problem.with_rate(peak)
    return parse_topology(solve(problem, workers=workers).spec)
