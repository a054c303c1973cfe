"""The ``fleetopt`` group: its global options, the command registry and what commands share.

Commands live one family per module (``fleetopt.cli.physics``, ``plan``, ``simulate``,
``refine``, ``sweep``, ``energy``, ``calibrate``) and are registered by name in
``COMMANDS``.  The group imports a command's module when that command runs (or when
``--help`` lists them), by its name in the registry and never inside ``try``: a module
that fails to import is an error of the command that needs it, not a silently missing
command (``tests/test_cli.py`` imports every registered command).  Loading one family per
command keeps ``fleetopt solve`` from importing the simulator, Optuna's study code or the
sweep driver (its start-up budget, README "Solving").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from fleetopt import console, lazy
from fleetopt.calibration_files import load_calibration
from fleetopt.catalog import Catalog, load_catalog
from fleetopt.errors import FleetoptError
from fleetopt.loading import load_instance
from fleetopt.problem import Problem
from fleetopt.render import render, to_json

COMMANDS: dict[str, str] = {
    "law": "fleetopt.cli.physics:law",
    "estimate": "fleetopt.cli.physics:estimate",
    "evaluate": "fleetopt.cli.plan:evaluate",
    "solve": "fleetopt.cli.plan:solve",
    "simulate": "fleetopt.cli.simulate:simulate",
    "refine": "fleetopt.cli.refine:refine",
    "sweep": "fleetopt.cli.sweep:sweep",
    "sweep-report": "fleetopt.cli.sweep:sweep_report",
    "energy": "fleetopt.cli.energy:energy",
    "energy-map": "fleetopt.cli.energy:energy_map_cmd",
    "calibrate": "fleetopt.cli.calibrate:calibrate",
    "catalog": "fleetopt.cli.physics:catalog",
}
"""Command name -> ``module:attribute`` of its click command, in the order --help lists them."""

FORMATS = click.Choice(["table", "json", "csv"])


class Group(click.Group):
    """A click group whose commands are imported from ``COMMANDS`` when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every registered command, in registry order."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called ``cmd_name`` (its module imported now), or None."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        command = lazy.load(target)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--catalog", "catalog", multiple=True, type=click.Path(dir_okay=False),
              help="Extra GPU/model catalog YAML (adds or overrides entries; also $FLEETOPT_CATALOG).")
@click.option("--calibration", "calibration", default=None, type=click.Path(dir_okay=False),
              envvar="FLEETOPT_CALIBRATION",
              help="Calibration file from 'fleetopt calibrate' (also $FLEETOPT_CALIBRATION); default: packaged.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars and no warnings on stderr (errors are still shown).")
@click.version_option(package_name="fleetopt")
@click.pass_context
def cli(ctx: click.Context, catalog: tuple[str, ...], calibration: str | None, debug: bool, quiet: bool) -> None:
    """Plan LLM serving fleets for tokens per joule: pool boundaries, GPU types, counts."""
    ctx.ensure_object(dict)
    ctx.obj["catalog"] = catalog
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet
    console.configure(quiet=quiet)
    if calibration:
        load_calibration(calibration)


mode_opt = click.option("--mode", type=click.Choice(["physical", "paper", "paper-computed"]), default="physical",
                        show_default=True, help="physical (calibrated, default) or the published 1/W model.")
set_opt = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                       help="Override an instance field (repeatable), e.g. --set workload.arrival_rate=500.")
format_opt = click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
out_opt = click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                       help="Folder for the plan report: plan.json, pools.csv, plan.md, plan.html and PNG plots "
                            "(written as one set).")
force_opt = click.option("--force", is_flag=True, help="Replace an earlier report in --out.")


def catalog_files(ctx: click.Context) -> tuple[str, ...]:
    """The ``--catalog`` files of this invocation."""
    return tuple(ctx.find_root().obj.get("catalog", ()))


def catalog_of(ctx: click.Context) -> Catalog:
    """The packaged catalog plus ``--catalog`` files (cached per set of files)."""
    return load_catalog(catalog_files(ctx))


def load(ctx: click.Context, instance: str, overrides: Sequence[str]) -> Problem:
    """The instance (``-`` reads stdin) with its ``--set`` overrides, validated, checked
    against the catalog (unknown model or GPU, a TP that does not divide the heads: exit 2,
    never 'infeasible') and compiled."""
    cat = catalog_of(ctx)
    return Problem.from_instance(load_instance(instance, overrides, catalog=cat), cat)


def ints(text: str, name: str) -> list[int]:
    """Comma-separated integers (``4096,8192``) named ``name`` in the error."""
    try:
        vals = [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise FleetoptError(f"{name}: expected comma-separated integers, got '{text}'") from None
    if not vals:
        raise FleetoptError(f"{name}: expected at least one value")
    return vals


def emit(obj: Any, fmt: str, title: str | None = None) -> None:
    """Rows or one record as JSON, CSV or an aligned table on stdout."""
    if fmt == "json":
        click.echo(to_json(obj))
    else:
        click.echo(render(obj if isinstance(obj, list) else [obj], fmt, title))


def show(res: dict[str, Any], fmt: str, tables: Callable[[dict[str, Any]], str]) -> bool:
    """JSON, the pools as CSV, or ``tables(res)``; returns True when the tables were shown."""
    if fmt == "json":
        emit(res, "json")
    elif fmt == "csv":
        emit(res["pools"], "csv")
    else:
        click.echo(tables(res))
        return True
    return False
