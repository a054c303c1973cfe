"""The ``fleetopt`` group: its global options and the command registry.

Commands live one family per module (``fleetopt.cli.physics``, ``plan``, ``simulate``,
``refine``, ``sweep``, ``energy``, ``calibrate``) and are registered by name in
``COMMANDS``.  The group imports a command's module when that command runs (or when
``--help`` lists them), by its name in the registry and never inside ``try``: a module
that fails to import is an error of the command that needs it, not a silently missing
command (``tests/test_cli.py`` imports every registered command).  Loading one family per
command keeps ``fleetopt solve`` from importing the simulator, Optuna's study code or the
sweep driver (its start-up budget, README "Solving").  What the commands share (options,
loading an instance, printing) is in ``fleetopt.cli.common``, which imports no command: the
registry's targets import it, never this module, so the package has no import cycle.
"""

from __future__ import annotations

import click

from fleetopt import console, lazy
from fleetopt.calibration_files import load_calibration

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
