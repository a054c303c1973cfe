"""``fleetopt refine``: Optuna over the knobs the MILP only samples, seeded by its plan.

The study (``fleetopt.refinement.refine``) persists in a journal file or an RDB, so the
same command resumes it; ``--pareto ttft|cost`` adds a second objective and reports the
Pareto front; ``--verify`` simulates the refined plan.  The table shows the MILP plan and
the refined one on the instance's objective, the improvement, the trial counts and the
best knobs; ``--format json`` the whole result (its ``history`` lists every trial);
``--out`` writes the refined plan's report (``fleetopt.plan_report.plan_from_refine``:
the MILP plan as its baseline, the Pareto front and the optimisation history as plots).
Progress (trials) shows on a terminal after two seconds; Ctrl-C lets the running trial
finish and exits 130 with what the study keeps.
"""

from __future__ import annotations

import math

import click

from fleetopt.cli.common import emit, force_opt, format_opt, load, out_opt, set_opt
from fleetopt.cli.plan import check_out
from fleetopt.console import progress_enabled
from fleetopt.errors import FleetoptError
from fleetopt.plan_report import plan_from_refine
from fleetopt.plan_report.inputs import plan_inputs
from fleetopt.plan_report.write import write_report
from fleetopt.refinement import refine as run
from fleetopt.render import table


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False, allow_dash=True))
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
@format_opt
@out_opt
@force_opt
@click.pass_context
def refine(ctx: click.Context, instance: str, trials: int, timeout_s: float | None, storage: str | None,
           study_name: str | None, seed: int, pareto: str | None, verify: bool, overrides: tuple[str, ...],
           fmt: str, out_dir: str | None, force: bool) -> None:
    """Optuna refinement of the non-convex knobs, seeded by the MILP plan.

    The knobs: exact boundaries between the MILP's candidates, each pool's GPU type, TP and
    admission, max_num_seqs, a per-GPU DVFS power cap, gpu_memory_utilization, the prefill
    chunk and compress-and-route gamma; every trial is the exact ``evaluate``."""
    if timeout_s is not None and not math.isfinite(timeout_s):
        raise FleetoptError(f"--timeout: must be a finite number of seconds, got {timeout_s}")
    problem = load(ctx, instance, overrides)
    if out_dir:
        force = check_out(out_dir, force)
    res = run(problem, trials, timeout_s, storage, study_name, seed, pareto, progress=progress_enabled(),
              verify=verify)
    if out_dir:
        write_report(plan_from_refine(res), out_dir, plan_inputs(problem), force)
    if fmt == "json":
        emit(res, "json")
        return
    if fmt == "csv":
        emit(res["best"]["pools"], "csv")
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
