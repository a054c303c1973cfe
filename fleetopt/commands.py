"""CLI commands that read instance files (registered on import by ``fleetopt.cli``)."""

from __future__ import annotations

import click

from fleetopt.cli import FORMATS, _catalog, _emit, cli

set_opt = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                       help="Override an instance field (repeatable), e.g. --set workload.arrival_rate=500.")


def _fleet_tables(result: dict) -> str:
    from fleetopt.output import table

    cols = ["lo_tokens", "hi_tokens", "gpu", "tp", "instances", "gpus", "arrival_rate", "utilization", "batch",
            "ttft_p99_ms", "tpot_p99_ms", "it_power_kw", "tokens_per_joule", "binding"]
    pools = [{c: p[c] for c in cols} for p in result["pools"]]
    f = result["fleet"]
    fleet = [{k: f[k] for k in ("instances", "gpus", "it_power_kw", "facility_power_kw", "tokens_per_joule",
                                "tok_per_w_paper", "energy_per_query_wh", "cost_per_hour", "cost_per_million_tokens")}]
    return table(pools, "pools") + "\n\n" + table(fleet, "fleet")


@cli.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@click.option("--topology", required=True, help="Pools as UPPER_TOKENS:GPU[xTP],... ascending.")
@click.option("--admission", type=click.Choice(["reserve", "paged"]), default=None,
              help="Admission policy (default: the instance's first).")
@set_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def evaluate(ctx, instance, topology, admission, overrides, fmt):
    """Size and score a given fleet: instances per pool, SLOs, power, tokens per joule."""
    from fleetopt.fleet import evaluate as ev
    from fleetopt.fleet import parse_topology
    from fleetopt.instance import load_instance

    inst, base = load_instance(instance, overrides)
    res = ev(inst, base, parse_topology(topology), admission, _catalog(ctx))
    if fmt == "json":
        _emit(res, "json")
    elif fmt == "csv":
        _emit(res["pools"], "csv")
    else:
        click.echo(_fleet_tables(res))
