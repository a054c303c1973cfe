"""Evaluate a topology: its pools routed, each sized under both SLOs, the fleet totalled.

``evaluate(problem, topology)`` is the exact evaluation every other layer agrees with: the
MILP's columns are sized by the same code (``fleetopt.columns``), Optuna's trials and the
baselines are evaluations, and a solved plan is re-read through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fleetopt import lazy
from fleetopt.physics.energy import tokens_per_joule
from fleetopt.plan import Plan
from fleetopt.plan_report.inputs import plan_inputs
from fleetopt.problem import Problem
from fleetopt.profiles.point import as_admission
from fleetopt.sizing import PoolSizing, pool_rows, size_pool
from fleetopt.topology import PoolChoice
from fleetopt.units import J_PER_WH, W_PER_KW

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile
    from fleetopt.profiles.point import Admission

SPLIT_POOL = "fleetopt.disagg:size_split_choice"
"""Sizes a split (prefill/decode) pool; loaded when a topology has one (``fleetopt.lazy``)."""

SizedReader = Callable[[float, int, str, int, "Admission", float], "tuple[PoolSizing, Profile] | None"]
"""``sized(lo, upper, gpu, tp, admission, share)``: a pool already sized by this same code
on the same traffic (``fleetopt solve`` reads its columns), or None to size it here."""


def fleet_totals(pools: Sequence[PoolSizing], rate: float, pue: float) -> dict[str, Any]:
    """Fleet figures from sized pools (powers in kW, rates per second):

        IT W = sum_k IT_k          facility W = IT W x PUE
        tok/J = sum_k tok/s_k / IT W          tok/W (paper) = tok/s / sum_k n_k P_gpu,k
        Wh/query = facility W / rate / 3600   USD per 1e6 tokens = USD/h / (tok/s x 3600 / 1e6)"""
    it_w = sum(p.it_power_w for p in pools)
    tok = sum(p.tokens_per_s for p in pools)
    gpu_w = sum(p.instances * p.power_per_gpu_w for p in pools)
    cost = sum(p.usd_per_hour for p in pools)
    return {"instances": sum(p.instances for p in pools), "gpus": sum(p.gpus for p in pools),
            "it_power_kw": it_w / W_PER_KW, "facility_power_kw": it_w * pue / W_PER_KW,
            "peak_it_power_kw": sum(p.instances * p.peak_instance_power_w for p in pools) / W_PER_KW,
            "tokens_per_s": tok, "tokens_per_joule": tokens_per_joule(tok, it_w),
            "tokens_per_joule_facility": tokens_per_joule(tok, it_w * pue),
            "tok_per_w_paper": tokens_per_joule(tok, gpu_w),
            "energy_per_query_wh": it_w * pue / rate / J_PER_WH if rate else 0.0,
            "cost_per_hour": cost, "cost_per_million_tokens": cost / (tok * 3600 / 1e6) if tok else 0.0,
            "arrival_rate": rate}


def evaluate(problem: Problem, topology: Sequence[PoolChoice], admission: str | None = None, *,
             rate: float | None = None, sized: SizedReader | None = None) -> Plan:
    """Size and score a given fleet (``fleetopt evaluate``) at the problem's arrival rate
    (or ``rate``).  ``admission`` is the policy of pools that name none (default: the
    instance's first).  Members of a mixed pool are sized at share x the range's rate; a
    split pool is sized as its two phases (``fleetopt.disagg``).  The fleet's provisioned
    power is checked against the facility cap on the instance's basis, as the MILP's row
    is (``within_power_cap``)."""
    rate = problem.rate if rate is None else rate
    problem.check_windows([p.upper for p in topology])
    mode, pw = problem.mode, problem.power
    adm = mode.admission_for(as_admission(admission) if admission else problem.pools.admission[0])
    pools: list[PoolSizing] = []
    prov_w = 0.0
    for choice, (lo, traffic, window) in zip(topology, problem.router.route_members(topology)):
        if choice.split:
            phases, profs = lazy.load(SPLIT_POOL)(problem, choice, traffic, rate * choice.share, lo, window)
            for ph, prof in zip(phases, profs):
                pools.append(ph)
                prov_w += pw.provisioned_w(ph.instances, ph.it_power_w, ph.peak_instance_power_w, ph.gpus,
                                           prof.gpu.tdp_w)
            continue
        a = mode.admission_for(choice.admission or adm)
        got = (sized(lo, choice.upper, problem.catalog.gpu(choice.gpu).id, choice.tp, a, choice.share)
               if sized and not choice.serving else None)
        if got is not None:
            p, prof = got
        else:
            prof = problem.profile(choice.gpu, choice.tp, choice.serving)
            p = size_pool(prof, traffic, rate * choice.share, lo, choice.upper, window, problem.slo, a,
                          pw.host_w_per_gpu, problem.price(prof.gpu.id))
            p.split = choice.share
        pools.append(p)
        prov_w += pw.provisioned_w(p.instances, p.it_power_w, p.peak_instance_power_w, p.gpus, prof.gpu.tdp_w)
    fleet = fleet_totals(pools, rate, pw.pue)
    fleet["provisioned_facility_kw"] = prov_w / W_PER_KW
    if pw.cap_w is not None:                     # checked on the provisioning basis, as the MILP's row
        fleet["facility_cap_mw"] = pw.cap_mw
        fleet["within_power_cap"] = prov_w <= pw.cap_w * (1 + 1e-12)
    return Plan("evaluate", problem.name, problem.mode.name, problem.instance.model, tuple(topology), tuple(pools),
                tuple(pool_rows(pools)), fleet, plan_inputs(problem), admission=adm)



