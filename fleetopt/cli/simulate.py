"""``fleetopt simulate``: a fleet request by request, beside its analytical prediction.

The fleet is a plan.json (``--plan``, as ``solve --out`` writes it) or a topology
(``--topology``).  Arrivals are Poisson at the instance's rate, or a trace replayed
(``--arrivals trace``); ``--trace-out`` writes every request's arrival, first token and
finish as CSV (atomically; never over a file without ``--force``); ``--repair`` adds
instances to pools that miss an SLO until they hold.  The table compares, per pool and for
the fleet, the simulated P99 TTFT and TPOT, utilisation and tokens per joule with the
analytical ones; a pool that misses an SLO is flagged.
"""

from __future__ import annotations

from typing import Any

import click

from fleetopt.cli.common import format_opt, load, set_opt, show
from fleetopt.errors import FleetoptError
from fleetopt.plan import read_topology
from fleetopt.render import table
from fleetopt.simulator.run import repair as rep
from fleetopt.simulator.run import simulate as sim
from fleetopt.topology import parse_topology


def _sim_tables(res: dict[str, Any]) -> str:
    """The simulated pools, the fleet simulated against analytical, and the run's line."""
    cols = ["lo_tokens", "hi_tokens", "gpu", "tp", "instances", "requests", "utilization", "ttft_p50_ms",
            "ttft_p99_ms", "analytical_ttft_p99_ms", "tpot_p99_ms", "slo_attainment", "tokens_per_joule",
            "preemptions"]
    rows = [{c: p[c] for c in cols} for p in res["pools"]]
    keys = ["ttft_p99_ms", "tpot_p99_ms", "tokens_per_joule", "energy_per_query_wh"]
    side = [{"figure": k, "simulated": res["fleet"][k], "analytical": res["analytical"][k],
             "deviation": res["deviation"].get(k)} for k in keys]
    s = res["sim"]
    tail = (f"\nslo attainment {res['fleet']['slo_attainment']:.4f}, preemptions {res['fleet']['preemptions']}; "
            f"{s['requests']} requests in {s['seconds']:.2f} s ({s['requests_per_second']:.0f} requests/s), "
            f"seed {s['seed']}")
    if s.get("warning"):
        tail += f"\nWARNING: {s['warning']}"
    if "repair" in res:
        r = res["repair"]
        tail += (f"\nrepair: {r['rounds']} rounds, instances {r['instances_before']} -> {r['instances_after']}, "
                 f"SLOs {'hold' if r['holds'] else 'still missed'}")
    return table(rows, "pools (simulated)") + "\n\n" + table(side, "fleet: simulated against analytical") + tail


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--plan", "plan_path", default=None, help="plan.json from fleetopt solve --out.")
@click.option("--topology", default=None, help="Pools as UPPER_TOKENS:GPU[xTP][:ADMISSION],... ascending.")
@click.option("--requests", type=click.IntRange(min=100, max=100_000_000), default=100_000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--repair", is_flag=True, help="Add instances to pools whose simulated P99s miss the SLOs.")
@click.option("--arrivals", type=click.Choice(["poisson", "trace"]), default="poisson", show_default=True,
              help="Poisson at the instance's rate, or the instance's trace timestamps replayed.")
@click.option("--trace-out", default=None, type=click.Path(dir_okay=False),
              help="Write one CSV row per request (arrival, first token, finish, instance).")
@click.option("--force", is_flag=True, help="Replace an existing --trace-out file.")
@click.option("--prefill-batch-tokens", type=click.IntRange(min=1), default=None,
              help="Split (pd) pools: prefill instances batch waiting prompts up to this many tokens "
                   "(default: one prompt at a time, as sized).")
@set_opt
@format_opt
@click.pass_context
def simulate(ctx: click.Context, instance: str, plan_path: str | None, topology: str | None, requests: int,
             seed: int, repair: bool, arrivals: str, trace_out: str | None, force: bool,
             prefill_batch_tokens: int | None, overrides: tuple[str, ...], fmt: str) -> None:
    """Request-level simulation of a fleet, beside its analytical prediction."""
    if (plan_path is None) == (topology is None):
        raise FleetoptError("simulate: give exactly one of --plan or --topology")
    problem = load(ctx, instance, overrides)
    topo = read_topology(plan_path)[0] if plan_path else parse_topology(topology or "")
    if repair:
        if trace_out or arrivals != "poisson":
            raise FleetoptError("--repair: simulates Poisson arrivals without --trace-out")
        res = rep(problem, topo, requests, seed)
    else:
        res = sim(problem, topo, requests, seed, arrivals=arrivals, trace_out=trace_out, force=force,
                  prefill_batch_tokens=prefill_batch_tokens)
    show(res, fmt, _sim_tables)
