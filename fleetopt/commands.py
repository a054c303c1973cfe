"""CLI commands that read instance files (registered on import by ``fleetopt.cli``)."""

from __future__ import annotations

from pathlib import Path

import click

from fleetopt import FleetoptError
from fleetopt.cli import FORMATS, _catalog, _emit, cli
from fleetopt.measurements import METRICS


def _load(ctx: click.Context, instance: str, overrides):
    """The instance with its overrides, validated and checked against the catalog (unknown
    model or GPU, a TP that does not divide the heads: exit 2, never 'infeasible')."""
    from fleetopt.instance import load_instance

    return load_instance(instance, overrides, catalog=_catalog(ctx))


set_opt = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                       help="Override an instance field (repeatable), e.g. --set workload.arrival_rate=500.")
out_opt = click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                       help="Folder for the plan report: plan.json, pools.csv, plan.md, plan.html and PNG plots "
                            "(written as one set).")
force_opt = click.option("--force", is_flag=True, help="Replace an earlier report in --out.")


def _fleet_tables(result: dict) -> str:
    from fleetopt.output import table

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


def _show(res: dict, fmt: str, tables) -> bool:
    """JSON, the pools as CSV, or ``tables(res)``; returns True when the tables were shown."""
    if fmt == "json":
        _emit(res, "json")
    elif fmt == "csv":
        _emit(res["pools"], "csv")
    else:
        click.echo(tables(res))
        return True
    return False


@cli.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@click.option("--topology", required=True, help="Pools as UPPER_TOKENS:GPU[xTP],... ascending.")
@click.option("--admission", type=click.Choice(["reserve", "paged"]), default=None,
              help="Admission policy (default: the instance's first).")
@set_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@out_opt
@force_opt
@click.pass_context
def evaluate(ctx, instance, topology, admission, overrides, fmt, out_dir, force):
    """Size and score a given fleet: instances per pool, SLOs, power, tokens per joule."""
    from fleetopt.fleet import evaluate as ev
    from fleetopt.fleet import parse_topology

    inst, base = _load(ctx, instance, overrides)
    if out_dir:
        force = _check_out(out_dir, force)
    topo = parse_topology(topology)
    res = ev(inst, base, topo, admission, _catalog(ctx))
    if out_dir:
        res.setdefault("topology", ",".join(p.spec() for p in topo))
        _write_outputs(ctx, out_dir, res, force, inst, base, instance, overrides)
    _show(res, fmt, _fleet_tables)


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


def _check_out(out_dir: str, force: bool) -> bool:
    """Before solving: refuse an --out folder that cannot take the plan report (one line),
    asking on an interactive terminal before replacing an earlier report.  Returns the
    force to write with."""
    import sys

    from fleetopt import FleetoptError
    from fleetopt.files import check_set_target
    from fleetopt.plan_report import OUT_FILES

    held = check_set_target(out_dir, OUT_FILES, "--out", force=True)     # the folder's shape only
    if held and not force:
        if sys.stdin.isatty() and click.confirm(f"overwrite {', '.join(held)} in {out_dir}?", default=False,
                                                err=True):
            return True
        raise FleetoptError(f"--out: {Path(out_dir) / held[0]} exists; pass --force to replace it")
    return force


def _write_outputs(ctx: click.Context, out_dir: str, res: dict, force: bool, inst, base, instance: str,
                   overrides) -> None:
    """The plan report (``fleetopt.plan_report``: plan.json with its inputs, pools.csv,
    plan.md, plan.html and the plots) as one set: a kill at any moment leaves the whole old
    report or the whole new one; a full or read-only disk is one line and leaves nothing
    behind."""
    from fleetopt.plan_report import write_report
    from fleetopt.plan_report.inputs import plan_inputs

    inputs = plan_inputs(inst, base, instance_file=instance, overrides=overrides,
                         catalog_files=ctx.obj.get("catalog", ()))
    write_report(res, out_dir, inputs, force)


@cli.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@set_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@out_opt
@force_opt
@click.option("--verbose", is_flag=True, help="Show the HiGHS log (on stderr).")
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
    import os

    from fleetopt.fleet import parse_topology
    from fleetopt.solve import solve_instance

    inst, base = _load(ctx, instance, overrides)
    if out_dir:
        force = _check_out(out_dir, force)
    from fleetopt.console import activity, stdout_to_stderr

    with (stdout_to_stderr() if verbose else activity("solving")):     # the HiGHS log on stderr, never stdout
        res = solve_instance(inst, base, _catalog(ctx), verbose=verbose, workers=workers or min(2, os.cpu_count() or 1))
    if verify or repair:
        from fleetopt.simulate.run import misses
        from fleetopt.simulate.run import repair as rep
        from fleetopt.simulate.run import simulate as sim

        topo = parse_topology(res["topology"])
        v = (rep if repair else sim)(inst, base, topo, requests, seed, _catalog(ctx))
        missed = [p for p in v["pools"] if p["requests"] and misses(inst, p)]
        res["verification"] = {"fleet": v["fleet"], "pools": v["pools"], "deviation": v["deviation"],
                               "sim": v["sim"], "slo_missed": bool(missed), **({"repair": v["repair"]} if repair else {})}
    if out_dir:
        _write_outputs(ctx, out_dir, res, force, inst, base, instance, overrides)
    if _show(res, fmt, _solve_tables):
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


def _sim_tables(res: dict) -> str:
    from fleetopt.output import table

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
    import json

    from fleetopt import FleetoptError
    from fleetopt.fleet import parse_topology

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


@cli.command()
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
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def simulate(ctx, instance, plan_path, topology, requests, seed, repair, arrivals, trace_out, force,
             prefill_batch_tokens, overrides, fmt):
    """Request-level simulation of a fleet, beside its analytical prediction."""
    from fleetopt import FleetoptError
    from fleetopt.fleet import parse_topology
    from fleetopt.simulate.run import repair as rep
    from fleetopt.simulate.run import simulate as sim

    if (plan_path is None) == (topology is None):
        raise FleetoptError("simulate: give exactly one of --plan or --topology")
    inst, base = _load(ctx, instance, overrides)
    topo = _plan_topology(plan_path) if plan_path else parse_topology(topology)
    if repair:
        if trace_out or arrivals != "poisson":
            raise FleetoptError("--repair: simulates Poisson arrivals without --trace-out")
        res = rep(inst, base, topo, requests, seed, _catalog(ctx))
    else:
        res = sim(inst, base, topo, requests, seed, _catalog(ctx), arrivals=arrivals, trace_out=trace_out, force=force,
                  prefill_batch_tokens=prefill_batch_tokens)
    _show(res, fmt, _sim_tables)


@cli.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@click.option("--trials", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds.")
@click.option("--storage", default=None,
              help="Optuna storage: a journal file path (default .fleetopt/<instance>.optuna.journal) or an RDB URL.")
@click.option("--study", "study_name", default=None, help="Study name (default refine-<instance>-<objective>).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--pareto", type=click.Choice(["ttft", "cost"]), default=None,
              help="Multi-objective: tokens per joule against P99 TTFT or against cost; reports the Pareto front.")
@click.option("--verify", is_flag=True, help="Simulate the refined plan (50,000 requests) and report it.")
@set_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@out_opt
@force_opt
@click.pass_context
def refine(ctx, instance, trials, timeout_s, storage, study_name, seed, pareto, verify, overrides, fmt, out_dir, force):
    """Optuna refinement of the non-convex knobs, seeded by the MILP plan."""
    import math

    from fleetopt import FleetoptError
    from fleetopt.console import progress_enabled
    from fleetopt.output import table
    from fleetopt.refine import refine as run

    if timeout_s is not None and not math.isfinite(timeout_s):
        raise FleetoptError(f"--timeout: must be a finite number of seconds, got {timeout_s}")
    inst, base = _load(ctx, instance, overrides)
    if out_dir:
        force = _check_out(out_dir, force)
    res = run(inst, base, trials, timeout_s, storage, study_name, seed, pareto, _catalog(ctx),
              progress=progress_enabled(), verify=verify)
    if out_dir:
        from fleetopt.plan_report import plan_from_refine

        _write_outputs(ctx, out_dir, plan_from_refine(res), force, inst, base, instance, overrides)
    if fmt == "json":
        _emit(res, "json")
        return
    if fmt == "csv":
        _emit(res["best"]["pools"], "csv")
        return
    key = "cost_per_hour" if res["objective"] == "min_cost" else "tokens_per_joule"
    rows = [{"plan": "milp", "topology": res["milp"]["topology"], key: res["milp"][key],
             "instances": res["milp"]["instances"]},
            {"plan": "refined", "topology": res["best"]["topology"], key: res["best"]["fleet"][key],
             "instances": res["best"]["fleet"]["instances"]}]
    t = res["trials"]
    click.echo(table(rows, f"study {res['study']}") + f"\n\nimprovement {100 * res['improvement']:+.2f} %; "
               f"trials {t['count']} ({t['completed']} completed, {t['pruned']} pruned, {t['this_run']} this run)"
               f"\nknobs: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in res["best"]["knobs"].items()))
    if "verification" in res:
        v = res["verification"]
        f = v["fleet"]
        click.echo(f"verify: {'SLO MISSED' if v['slo_missed'] else 'SLOs hold'} in simulation: P99 TTFT "
                   f"{f['ttft_p99_ms']:.0f} ms, P99 TPOT {f['tpot_p99_ms']:.1f} ms, tok/J {f['tokens_per_joule']:.4g} "
                   f"({100 * v['deviation'].get('tokens_per_joule', 0):+.1f} % vs analytical)")
    if "pareto" in res:
        click.echo("\n" + table(res["pareto"], "Pareto front"))


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Results folder (a Parquet dataset under OUT/cases, one file per case).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local worker processes.")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:port) to run the cases on.")
@click.option("--retry-failed", is_flag=True, help="Run again the cases recorded as failed.")
@click.option("--force", is_flag=True, help="Take over an --out folder holding another spec's results.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def sweep(ctx, spec, out_dir, workers, scheduler, retry_failed, force, fmt):
    """Solve every case of a sweep spec; resumable (finished cases are skipped)."""
    from fleetopt.console import progress_enabled
    from fleetopt.sweep import run_sweep

    res = run_sweep(spec, out_dir, workers, scheduler, retry_failed, progress=progress_enabled(),
                    force=force, catalog_files=tuple(ctx.obj.get("catalog", ())))
    if fmt == "json":
        _emit(res, "json")
        return
    rate = f", {res['cases_per_second']:.1f} cases/s" if res["cases_per_second"] else ""
    click.echo(f"{res['spec']}: {res['cases']} cases, {res['done']} run now ({res['failed']} failed, "
               f"{res['infeasible']} infeasible), {res['skipped']} already done; {res['seconds']:.1f} s{rate}; "
               f"results in {res['out']}/cases"
               + (f"; removed {res['removed_stale']} rows of cases no longer in the spec" if res["removed_stale"] else ""))
    for e in res["errors"]:
        click.echo(f"  failed {e}", err=True)


@cli.command("sweep-report")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def sweep_report(out_dir, fmt):
    """Pivot tables and PNG plots of a sweep's results (written under OUT/report)."""
    from fleetopt.report import report

    res = report(out_dir)
    if fmt == "json":
        _emit(res, "json")
    else:
        click.echo(res["text"])
        click.echo("\nwrote " + ", ".join(res["files"]))


@cli.command()
@click.argument("measurements", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Write the fitted calibration to this YAML file (never replaced without --force).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--nfev", type=click.IntRange(min=5), default=100, show_default=True,
              help="Least-squares evaluations (more: slower, closer fit).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def calibrate(ctx, measurements, out_path, force, nfev, fmt):
    """Fit the physical model's coefficients to your own measurements (CSV schema in the README)."""
    from fleetopt.calibrate import calibrate as run, read_measurements, write_calibration
    from fleetopt.physics.calibration import active_label

    cat = _catalog(ctx)
    df = read_measurements(measurements, cat)
    if out_path and Path(out_path).exists() and not force:
        raise FleetoptError(f"{out_path}: exists (use --force to replace it)")
    rep = run(df, cat, max_nfev=nfev)
    if out_path:
        write_calibration(rep.result.cal, out_path, f"{Path(measurements).name} ({rep.rows} rows)", force)
    res = {"measurements": str(measurements), "rows": rep.rows, "started_from": active_label(),
           "residuals": rep.rows_table(), "leave_one_gpu_out": rep.logo,
           "coefficients": rep.result.cal.to_dict(), "prompt_tokens_by_task": rep.result.prompt_by_task,
           "engines": {k: vars(v) for k, v in rep.result.engines.items()}, "written": out_path}
    if fmt == "json":
        _emit(res, "json")
        return
    _emit(rep.rows_table(), fmt, f"{measurements}: {rep.rows} rows, residuals before ({active_label()}) and after the fit")
    if fmt == "table":
        if rep.logo:
            click.echo("\nleave one GPU out (MAPE %):")
            for r in rep.logo:
                click.echo("  " + r["held_out"] + ": " + ", ".join(f"{m} {r[m]:.1f}" for m in METRICS if m in r))
        click.echo("\ncoefficients: " + ", ".join(f"{k}={v:.4g}" for k, v in rep.result.cal.to_dict().items()))
        for t, p in rep.result.prompt_by_task.items():
            click.echo(f"inferred prompt tokens for task {t}: {p:.0f}")
        if out_path:
            click.echo(f"wrote {out_path}")
