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


def _solve_tables(res: dict) -> str:
    from fleetopt.output import table

    s = res["solver"]
    lines = [_fleet_tables(res), ""]
    rows = []
    for name, b in res["baselines"].items():
        if b:
            rows.append({"fleet": name, "topology": b["topology"], "instances": b["instances"], "gpus": b["gpus"],
                         "it_power_kw": b["it_power_kw"], "tokens_per_joule": b["tokens_per_joule"],
                         "cost_per_hour": b["cost_per_hour"]})
    f = res["fleet"]
    rows.insert(0, {"fleet": "plan", "topology": res["topology"], "instances": f["instances"], "gpus": f["gpus"],
                    "it_power_kw": f["it_power_kw"], "tokens_per_joule": f["tokens_per_joule"],
                    "cost_per_hour": f["cost_per_hour"]})
    lines.append(table(rows, "plan against baselines (same model)"))
    gap = "-" if s["gap"] is None else f"{100 * s['gap']:.4g} %"
    lines.append(f"\nsolver: {s['status']} (gap {gap}), {s['variables']} columns, {s['constraints']} rows, "
                 f"{s['seconds']:.2f} s; search space {len(res['search_space']['boundaries'])} boundaries x "
                 f"{len(res['search_space']['configs'])} configs, K <= {res['search_space']['max_pools']}")
    if s["status"] == "time_limit":
        lines.append("WARNING: time limit reached: the plan is the best found, not proven optimal (see gap)")
    return "\n".join(lines)


def _write_outputs(out_dir: str, res: dict, force: bool) -> None:
    """plan.json, pools.csv and plan.md, each written atomically; existing files are only
    replaced with --force (or after a yes on an interactive terminal)."""
    import sys
    from pathlib import Path

    from fleetopt import FleetoptError
    from fleetopt.output import to_csv, to_json, write_atomic

    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise FleetoptError(f"--out: '{d}' exists and is not a folder")
    names = ["plan.json", "pools.csv", "plan.md"]
    clash = [n for n in names if (d / n).exists()]
    if clash and not force:
        if sys.stdin.isatty() and click.confirm(f"overwrite {', '.join(clash)} in {d}?", default=False, err=True):
            pass
        else:
            raise FleetoptError(f"--out: {d / clash[0]} exists; pass --force to replace it")
    write_atomic(d / "plan.json", to_json(res) + "\n")
    write_atomic(d / "pools.csv", to_csv(res["pools"]))
    write_atomic(d / "plan.md", f"# fleetopt plan: {res['instance']}\n\n```\n{_solve_tables(res)}\n```\n")


@cli.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@set_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for plan.json, pools.csv and plan.md (written atomically).")
@click.option("--force", is_flag=True, help="Replace existing files in --out.")
@click.option("--verbose", is_flag=True, help="Show the HiGHS log.")
@click.pass_context
def solve(ctx, instance, overrides, fmt, out_dir, force, verbose):
    """Optimal pool boundaries, GPU types and counts (MILP, HiGHS), with baselines and gains."""
    from fleetopt.instance import load_instance
    from fleetopt.solve import solve_instance

    inst, base = load_instance(instance, overrides)
    res = solve_instance(inst, base, _catalog(ctx), verbose=verbose)
    if out_dir:
        _write_outputs(out_dir, res, force)
    if fmt == "json":
        _emit(res, "json")
    elif fmt == "csv":
        _emit(res["pools"], "csv")
    else:
        click.echo(_solve_tables(res))
