"""What the commands share: their options, loading an instance, printing results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from fleetopt.catalog import Catalog, load_catalog
from fleetopt.errors import FleetoptError
from fleetopt.loading import load_instance
from fleetopt.problem import Problem
from fleetopt.profiles import MODES
from fleetopt.render import render, to_json

FORMATS = click.Choice(["table", "json", "csv"])

mode_opt = click.option("--mode", type=click.Choice(list(MODES)), default="physical",
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
