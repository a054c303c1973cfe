"""``fleetopt evaluate`` and ``fleetopt solve``: size a given fleet, or find the optimal one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fleetopt import atomic
from fleetopt.cli.app import catalog_of, format_opt, load, set_opt, show
from fleetopt.errors import FleetoptError
from fleetopt.fleet import evaluate as ev
from fleetopt.fleet import parse_topology
from fleetopt.render import table, to_csv, to_json
from fleetopt.simulate.run import misses
from fleetopt.simulate.run import repair as rep
from fleetopt.simulate.run import simulate as sim
from fleetopt.solve import solve_instance


def _fleet_tables(result: dict) -> str:
    cols = ["lo_tokens", "hi_tokens", "gpu", "tp", "instances", "gpus", "arrival_rate", "utilization", "batch",
            "ttft_p99_ms", "tpot_p99_ms", "it_power_kw", "tokens_per_joule", "binding"]
    if any(p.get("split", 1.0) != 1.0 for p in result["pools"]):       # a mixed pool: show each member's share
        cols.insert(4, "split")
    if any("phase" in p for p in result["pools"]):                      # split pools: prefill / decode / both
        cols.insert(2, "phase")
    pools = [{c: p[c] for c in cols} for p in result["pools"]]
    f = result["fleet"]
    fleet = [{k: f[k] for k in ("instances", "gpus", "it_power_kw", "facility_power_kw", "tokens_per_joule",
                                "tok_per_w_paper", "energy_per_query_wh", "cost_per_hour", "cost_per_million_tokens")}]
    return table(pools, "pools") + "\n\n" + table(fleet, "fleet")


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@click.option("--topology", required=True, help="Pools as UPPER_TOKENS:GPU[xTP],... ascending.")
@click.option("--admission", type=click.Choice(["reserve", "paged"]), default=None,
              help="Admission policy (default: the instance's first).")
@set_opt
@format_opt
@click.pass_context
def evaluate(ctx, instance, topology, admission, overrides, fmt):
    """Size and score a given fleet: instances per pool, SLOs, power, tokens per joule."""
    inst, base = load(ctx, instance, overrides)
    res = ev(inst, base, parse_topology(topology), admission, catalog_of(ctx))
    show(res, fmt, _fleet_tables)


def _solve_tables(res: dict) -> str:
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
    ss = res["search_space"]
    size = (f"{s['variables']} variables x {s['constraints']} rows (of {ss['columns']} columns, "
            f"{ss['columns_after_pruning']} after dominance pruning, the rest eliminated by bound)"
            if s["variables"] else f"no MILP solved ({ss['columns']} columns)")
    lines.append(f"\nsolver: {s['status']} (gap {gap}), {size}, {s['seconds']:.2f} s; search space "
                 f"{len(ss['boundaries'])} boundaries x {len(ss['configs'])} configs, K <= {ss['max_pools']}")
    if s["status"] == "time_limit":
        lines.append("WARNING: time limit reached: the plan is the best found, not proven optimal (see gap)")
    lines += [f"note: {n}" for n in s.get("notes", [])]
    return "\n".join(lines)


OUT_FILES = ["plan.json", "pools.csv", "plan.md"]


def _check_out(out_dir: str, force: bool) -> bool:
    """Before solving: refuse an --out folder that cannot take the plan (one line), asking
    on an interactive terminal before replacing an earlier plan.  Returns the force to
    write with."""
    held = atomic.check_set_target(out_dir, OUT_FILES, "--out", force=True)     # the folder's shape only
    if held and not force:
        if sys.stdin.isatty() and click.confirm(f"overwrite {', '.join(held)} in {out_dir}?", default=False,
                                                err=True):
            return True
        raise FleetoptError(f"--out: {Path(out_dir) / held[0]} exists; pass --force to replace it")
    return force


def _write_outputs(out_dir: str, res: dict, force: bool) -> None:
    """plan.json, pools.csv and plan.md as one set (``fleetopt.files.write_set``): a kill
    at any moment leaves the whole old plan or the whole new one; a full or read-only disk
    is one line and leaves nothing behind."""
    texts = {"plan.json": to_json(res) + "\n", "pools.csv": to_csv(res["pools"]),
             "plan.md": f"# fleetopt plan: {res['instance']}\n\n```\n{_solve_tables(res)}\n```\n"}
    atomic.write_set(out_dir, {n: (lambda path, t=texts[n]: atomic.write_atomic(path, t)) for n in OUT_FILES},
                     "--out", force)


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@set_opt
@format_opt
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for plan.json, pools.csv and plan.md (written atomically).")
@click.option("--force", is_flag=True, help="Replace existing files in --out.")
@click.option("--verbose", is_flag=True, help="Show the HiGHS log.")
@click.option("--verify", is_flag=True, help="Simulate the plan and report both (flagged if an SLO is missed).")
@click.option("--repair", is_flag=True, help="With --verify: add instances to failing pools until the SLOs hold.")
@click.option("--requests", type=click.IntRange(min=100, max=100_000_000), default=100_000, show_default=True,
              help="Requests simulated by --verify.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the --verify simulation.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes sizing the candidate pools (default: up to 2, the cores there are).")
@click.pass_context
def solve(ctx, instance, overrides, fmt, out_dir, force, verbose, verify, repair, requests, seed, workers):
    """Optimal pool boundaries, GPU types and counts (MILP, HiGHS), with baselines and gains."""
    inst, base = load(ctx, instance, overrides)
    if out_dir:
        force = _check_out(out_dir, force)
    res = solve_instance(inst, base, catalog_of(ctx), verbose=verbose, workers=workers or min(2, os.cpu_count() or 1))
    if verify or repair:
        topo = parse_topology(res["topology"])
        v = (rep if repair else sim)(inst, base, topo, requests, seed, catalog_of(ctx))
        missed = [p for p in v["pools"] if p["requests"] and misses(inst, p)]
        res["verification"] = {"fleet": v["fleet"], "pools": v["pools"], "deviation": v["deviation"],
                               "sim": v["sim"], "slo_missed": bool(missed), **({"repair": v["repair"]} if repair else {})}
    if out_dir:
        _write_outputs(out_dir, res, force)
    if show(res, fmt, _solve_tables):
        if "verification" in res:
            v = res["verification"]
            f = v["fleet"]
            flag = "SLO MISSED in simulation" if v["slo_missed"] else "SLOs hold in simulation"
            click.echo(f"\nverify: {flag}: P99 TTFT {f['ttft_p99_ms']:.0f} ms, P99 TPOT {f['tpot_p99_ms']:.1f} ms, "
                       f"attainment {f['slo_attainment']:.4f}, tok/J {f['tokens_per_joule']:.4g} "
                       f"({100 * v['deviation'].get('tokens_per_joule', 0):+.1f} % vs analytical)")
            if "repair" in v:
                r = v["repair"]
                click.echo(f"repair: instances {r['instances_before']} -> {r['instances_after']}")
