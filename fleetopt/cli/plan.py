"""``fleetopt evaluate`` and ``fleetopt solve``: size a given fleet, or find the optimal one.

Both load the instance (a file, or ``-`` for stdin) with its ``--set`` overrides, compile
it once (``Problem.from_instance``) and print the ``Plan`` the library returns: its tables
(``Plan.to_text``), its JSON (``Plan.to_dict``: the result keys plus ``inputs``) or its
pools as CSV.  ``--out`` writes the plan report (``Plan.write``); the folder is checked
before the work starts, so a solve is never lost to a folder that cannot take its report.

``solve --verbose`` sends the HiGHS log to stderr (stdout holds nothing but the result);
without it a solve that runs past two seconds shows its elapsed time on a terminal.
``--verify`` simulates the plan (``fleetopt.simulator.run.verify``, loaded only then) and
``--repair`` adds instances to the pools that miss an SLO in simulation.  Exit statuses as
``fleetopt.cli``: 2 for a mistake, 3 infeasible (with the binding constraint), 4 no plan
within the time limit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fleetopt import console, lazy
from fleetopt.cli.common import emit, force_opt, format_opt, load, out_opt, set_opt
from fleetopt.errors import FleetoptError
from fleetopt.evaluation import evaluate as evaluate_fleet
from fleetopt.plan import Plan, check_out_folder
from fleetopt.solver import solve as solve_fleet
from fleetopt.topology import parse_topology

VERIFY = "fleetopt.simulator.run:verify"
"""The simulation behind ``solve --verify``; loaded only when asked for."""


def _show(plan: Plan, fmt: str) -> bool:
    """The plan as JSON, its pools as CSV, or its tables; True when the tables were shown
    (the caller then adds what only the terminal shows, e.g. the verification lines)."""
    if fmt == "json":
        emit(plan.to_dict(), "json")
    elif fmt == "csv":
        emit(list(plan.pool_rows), "csv")
    else:
        click.echo(plan.to_text())
        return True
    return False


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--topology", required=True, help="Pools as UPPER_TOKENS:GPU[xTP],... ascending.")
@click.option("--admission", type=click.Choice(["reserve", "paged"]), default=None,
              help="Admission policy (default: the instance's first).")
@set_opt
@format_opt
@out_opt
@force_opt
@click.pass_context
def evaluate(ctx: click.Context, instance: str, topology: str, admission: str | None, overrides: tuple[str, ...],
             fmt: str, out_dir: str | None, force: bool) -> None:
    """Size and score a given fleet: instances per pool, SLOs, power, tokens per joule."""
    problem = load(ctx, instance, overrides)
    if out_dir:
        force = check_out(out_dir, force)
    plan = evaluate_fleet(problem, parse_topology(topology), admission)
    if out_dir:
        plan.write(out_dir, force)
    _show(plan, fmt)


def check_out(out_dir: str, force: bool) -> bool:
    """Before the work: refuse an --out folder that cannot take the plan report (one line),
    asking on an interactive terminal before replacing an earlier report.  Returns the
    force to write with."""
    held = check_out_folder(out_dir)
    if held and not force:
        if sys.stdin.isatty() and click.confirm(f"overwrite {', '.join(held)} in {out_dir}?", default=False,
                                                err=True):
            return True
        raise FleetoptError(f"--out: {Path(out_dir) / held[0]} exists; pass --force to replace it")
    return force


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False, allow_dash=True))
@set_opt
@format_opt
@out_opt
@force_opt
@click.option("--verbose", is_flag=True, help="Show the HiGHS log (on stderr).")
@click.option("--verify", is_flag=True, help="Simulate the plan and report both (flagged if an SLO is missed).")
@click.option("--repair", is_flag=True, help="With --verify: add instances to failing pools until the SLOs hold.")
@click.option("--requests", type=click.IntRange(min=100, max=100_000_000), default=100_000, show_default=True,
              help="Requests simulated by --verify.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the --verify simulation.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes sizing the candidate pools (default: up to 2, the cores there are).")
@click.pass_context
def solve(ctx: click.Context, instance: str, overrides: tuple[str, ...], fmt: str, out_dir: str | None, force: bool,
          verbose: bool, verify: bool, repair: bool, requests: int, seed: int, workers: int | None) -> None:
    """Optimal pool boundaries, GPU types and counts (MILP, HiGHS), with baselines and gains."""
    problem = load(ctx, instance, overrides)
    if out_dir:
        force = check_out(out_dir, force)
    # the HiGHS log on stderr, never stdout
    with (console.stdout_to_stderr() if verbose else console.activity("solving")):
        plan = solve_fleet(problem, workers=workers or min(2, os.cpu_count() or 1), verbose=verbose)
    if verify or repair:
        plan = plan.replace(verification=lazy.load(VERIFY)(problem, plan, requests, seed, fix=repair))
    if out_dir:
        plan.write(out_dir, force)
    if _show(plan, fmt):
        for line in plan.verification_text():
            click.echo(line)
