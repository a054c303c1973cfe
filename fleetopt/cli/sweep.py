"""``fleetopt sweep`` and ``fleetopt sweep-report``: many solves from one spec, and their report.

``sweep`` validates every case of the spec before any runs (one line naming the case),
then solves the cases not yet done on ``--workers`` local processes or a Dask cluster
(``--scheduler``), one Parquet row per case written atomically; the summary says how many
ran, failed, were infeasible or were already done (``fleetopt.sweeps``).  ``sweep-report``
writes Markdown tables and PNG plots of the rows under OUT/report (``fleetopt.sweeps.report``).
"""

from __future__ import annotations

import click

from fleetopt.cli.common import catalog_files, emit
from fleetopt.console import progress_enabled
from fleetopt.sweeps import run_sweep
from fleetopt.sweeps.report import report


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Results folder (a Parquet dataset under OUT/cases, one file per case).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local worker processes.")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:port) to run the cases on.")
@click.option("--retry-failed", is_flag=True, help="Run again the cases recorded as failed.")
@click.option("--force", is_flag=True, help="Take over an --out folder holding another spec's results.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def sweep(ctx: click.Context, spec: str, out_dir: str, workers: int, scheduler: str | None, retry_failed: bool,
          force: bool, fmt: str) -> None:
    """Solve every case of a sweep spec; resumable (finished cases are skipped)."""
    res = run_sweep(spec, out_dir, workers, scheduler, retry_failed, progress=progress_enabled(),
                    force=force, catalog_files=catalog_files(ctx))
    if fmt == "json":
        emit(res, "json")
        return
    rate = f", {res['cases_per_second']:.1f} cases/s" if res["cases_per_second"] else ""
    click.echo(f"{res['spec']}: {res['cases']} cases, {res['done']} run now ({res['failed']} failed, "
               f"{res['infeasible']} infeasible), {res['skipped']} already done; {res['seconds']:.1f} s{rate}; "
               f"results in {res['out']}/cases"
               + (f"; removed {res['removed_stale']} rows of cases no longer in the spec"
                  if res["removed_stale"] else ""))
    for e in res["errors"]:
        click.echo(f"  failed {e}", err=True)


@click.command("sweep-report")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def sweep_report(out_dir: str, fmt: str) -> None:
    """Pivot tables and PNG plots of a sweep's results (written under OUT/report)."""
    res = report(out_dir)
    if fmt == "json":
        emit(res, "json")
    else:
        click.echo(res["text"])
        click.echo("\nwrote " + ", ".join(res["files"]))
