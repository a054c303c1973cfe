"""``fleetopt calibrate``: fit the physical model's coefficients to a user's own measurements.

The CSV (schema in ``fleetopt.measurements``) is validated row by row (one line naming the
row and column); the fit (``fleetopt.fit``: least squares on log(predicted / measured),
each (source, metric) group weighted equally) starts from the calibration in use.  The table shows the mean
absolute percentage error per metric before and after, and leave-one-GPU-out when the
table holds several GPU chips; ``--out`` writes the fitted calibration as YAML, for
``--calibration`` or an instance's ``calibration`` field.
"""

from __future__ import annotations

from pathlib import Path

import click

from fleetopt.calibrate import calibrate as run
from fleetopt.calibrate import read_measurements, write_calibration
from fleetopt.cli.common import catalog_of, emit, format_opt
from fleetopt.errors import FleetoptError
from fleetopt.measurements import METRICS
from fleetopt.physics.calibration import active_label


@click.command()
@click.argument("measurements", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Write the fitted calibration to this YAML file (never replaced without --force).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--nfev", type=click.IntRange(min=5), default=100, show_default=True,
              help="Least-squares evaluations (more: slower, closer fit).")
@format_opt
@click.pass_context
def calibrate(ctx: click.Context, measurements: str, out_path: str | None, force: bool, nfev: int, fmt: str) -> None:
    """Fit the physical model's coefficients to your own measurements (CSV schema in the README)."""
    cat = catalog_of(ctx)
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
        emit(res, "json")
        return
    emit(rep.rows_table(), fmt,
         f"{measurements}: {rep.rows} rows, residuals before ({active_label()}) and after the fit")
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
