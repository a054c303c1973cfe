"""``fleetopt simulate``: a fleet request by request, beside its analytical prediction."""

from __future__ import annotations

import json

import click

from fleetopt.cli.app import catalog_of, format_opt, load, set_opt, show
from fleetopt.errors import FleetoptError
from fleetopt.fleet import PoolChoice, parse_topology
from fleetopt.render import table
from fleetopt.simulate.run import repair as rep
from fleetopt.simulate.run import simulate as sim


def _sim_tables(res: dict) -> str:
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


def _plan_topology(plan_path: str):
    try:
        with open(plan_path) as f:
            plan = json.load(f)
        topology = plan["topology"]
    except FileNotFoundError:
        raise FleetoptError(f"--plan: no such file '{plan_path}'") from None
    except OSError as e:
        raise FleetoptError(f"--plan: cannot read '{plan_path}' ({e.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise FleetoptError(f"--plan: '{plan_path}' is not a plan.json written by fleetopt solve --out") from None
    if not isinstance(topology, str):
        raise FleetoptError(f"--plan: '{plan_path}' is not a plan.json written by fleetopt solve --out")
    return parse_topology(topology)


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False))
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
def simulate(ctx, instance, plan_path, topology, requests, seed, repair, arrivals, trace_out, force,
             prefill_batch_tokens, overrides, fmt):
    """Request-level simulation of a fleet, beside its analytical prediction."""
    if (plan_path is None) == (topology is None):
        raise FleetoptError("simulate: give exactly one of --plan or --topology")
    inst, base = load(ctx, instance, overrides)
    topo = _plan_topology(plan_path) if plan_path else parse_topology(topology)
    if repair:
        if trace_out or arrivals != "poisson":
            raise FleetoptError("--repair: simulates Poisson arrivals without --trace-out")
        res = rep(inst, base, topo, requests, seed, catalog_of(ctx))
    else:
        res = sim(inst, base, topo, requests, seed, catalog_of(ctx), arrivals=arrivals, trace_out=trace_out, force=force,
                  prefill_batch_tokens=prefill_batch_tokens)
    show(res, fmt, _sim_tables)
