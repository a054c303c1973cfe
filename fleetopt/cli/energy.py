"""``fleetopt energy`` and ``fleetopt energy-map``: energy at scale of a plan, and over
input x output lengths.

``energy`` prices a plan (``--plan``, ``--topology``, or the instance solved first) over a
day: energy per query at the IT and the facility level (Wh = J / 3600; facility = IT x
PUE), MWh per day and GWh per year of ``--queries-per-day``, cost at ``--usd-per-mwh`` and
emissions at ``--gco2-per-kwh``, over the instance's 24-hour load profile when it has one
(``fleetopt.energy_scale``).

``energy-map`` tabulates one instance (GPUs only) over an input x output grid: J per
output token = instance W / output tokens/s at each cell's steady state, J per token =
that x O / (I + O), Wh per query = that x O / 3600; the most efficient cell and the cells
within 10 % of it are marked (``fleetopt.energy_map``); ``--out`` writes a heatmap PNG and
the rows as JSON, as one set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from fleetopt.atomic import check_set_target, write_atomic, write_set
from fleetopt.catalog import Catalog
from fleetopt.cli.common import catalog_of, emit, format_opt, ints, load, set_opt
from fleetopt.energy_map import energy_map, matrix_text, write_heatmap
from fleetopt.energy_scale import energy_report, solve_for_peak
from fleetopt.errors import FleetoptError
from fleetopt.plan import read_topology
from fleetopt.profiles import make_profile
from fleetopt.render import table, to_json
from fleetopt.topology import parse_topology

SUMMARY = [("queries_per_day", "queries/day"), ("peak_queries_per_s", "queries/s (busiest hour)"),
           ("mean_output_tokens", "tokens"), ("instances_peak", "instances"), ("gpus_peak", "GPUs"),
           ("utilization_peak", "fraction of slots (busiest hour)"),
           ("wh_per_query_gpu", "Wh/query (GPUs of serving instances)"),
           ("wh_per_query_host", "Wh/query (host share of serving instances)"),
           ("wh_per_query_idle_instances", "Wh/query (instances idle in quieter hours)"),
           ("wh_per_query_it", "Wh/query (IT = GPUs + host + idle)"),
           ("wh_per_query_facility", "Wh/query (facility = IT x PUE)"),
           ("wh_per_query_facility_p50", "Wh/query (facility, median query)"),
           ("j_per_output_token_facility", "J per output token (facility)"),
           ("mwh_per_day", "MWh/day (facility)"), ("gwh_per_year", "GWh/year (facility)"),
           ("mean_facility_power_mw", "MW (facility, day mean)"), ("peak_facility_power_mw", "MW (facility, peak)"),
           ("usd_per_day", "USD/day"), ("usd_per_year", "USD/year"), ("usd_per_million_queries", "USD"),
           ("tco2_per_day", "t CO2/day"), ("tco2_per_year", "t CO2/year"), ("gco2_per_query", "g CO2/query")]


def _energy_tables(res: dict[str, Any]) -> str:
    """The day's figures, the pools at the busiest hour, and the hours when profiled."""
    rows = [{"figure": k, "value": res[k], "unit": u} for k, u in SUMMARY if k in res]
    pools = [{k: p[k] for k in ("lo_tokens", "hi_tokens", "gpu", "tp", "instances", "utilization", "batch",
                                "power_per_gpu_w", "mwh_per_day")} for p in res["pools"]]
    text = [table(rows, f"energy of {res['topology']} ({res['model']}, PUE {res['pue']:g}, host "
                        f"{res['host_w_per_node']:g} W per 8-GPU node)"), "", table(pools, "pools (busiest hour)")]
    if res["load_profile"] is not None:
        text += ["", table(res["hours"], f"hours (idle instances: {res['load_profile']['idle_instances']})")]
    return "\n".join(text)


def _flat(res: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures of a report (its CSV row)."""
    return {k: v for k, v in res.items() if not isinstance(v, (list, dict)) and v is not None}


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--plan", "plan_path", default=None, help="plan.json from fleetopt solve --out (default: solve first).")
@click.option("--topology", default=None, help="Pools as UPPER_TOKENS:GPU[xTP][:ADMISSION],... ascending.")
@click.option("--queries-per-day", type=float, default=None,
              help="Query volume (default: the instance's rate over the day, its load profile applied).")
@click.option("--usd-per-mwh", type=float, default=None, help="Electricity price, USD per MWh.")
@click.option("--gco2-per-kwh", type=float, default=None, help="Grid carbon intensity, gCO2 per kWh.")
@set_opt
@format_opt
@click.pass_context
def energy(ctx: click.Context, instance: str, plan_path: str | None, topology: str | None,
           queries_per_day: float | None, usd_per_mwh: float | None, gco2_per_kwh: float | None,
           overrides: tuple[str, ...], fmt: str) -> None:
    """Energy per query (IT and facility), MWh/day and GWh/year of a plan for a query volume."""
    if plan_path is not None and topology is not None:
        raise FleetoptError("energy: give at most one of --plan or --topology")
    for flag, v in (("--queries-per-day", queries_per_day), ("--usd-per-mwh", usd_per_mwh),
                    ("--gco2-per-kwh", gco2_per_kwh)):
        if v is not None and not v >= 0:
            raise FleetoptError(f"{flag}: must be >= 0, got {v:g}")
        if v is not None and v == float("inf"):
            raise FleetoptError(f"{flag}: must be a finite number, got {v:g}")
    if queries_per_day is not None and queries_per_day <= 0:
        raise FleetoptError(f"--queries-per-day: must be > 0, got {queries_per_day:g}")
    cat = catalog_of(ctx)
    problem = load(ctx, instance, overrides)
    if plan_path:
        topo, planned = read_topology(plan_path)
        _check_plan_model(plan_path, planned.get("model"), problem.instance.model, cat)
    elif topology:
        topo = parse_topology(topology)
    else:
        topo = solve_for_peak(problem, queries_per_day, workers=min(2, os.cpu_count() or 1))
    res = energy_report(problem, topo, queries_per_day, usd_per_mwh, gco2_per_kwh)
    if fmt == "json":
        emit(res, "json")
    elif fmt == "csv":
        emit(_flat(res), "csv")
    else:
        click.echo(_energy_tables(res))


def _check_plan_model(plan_path: str, planned: str | None, model: str, cat: Catalog) -> None:
    """A plan solved for another model would be sized here on the instance's model: refuse."""
    if planned and cat.model(planned).id != cat.model(model).id:
        raise FleetoptError(f"--plan: '{plan_path}' was solved for {planned}, the instance serves {model}")


def _write_map(out_dir: str, rows: list[dict[str, Any]], title: str, force: bool) -> list[str]:
    """energy_map.png and energy_map.json in ``out_dir``, as one set
    (``fleetopt.files.write_set``); existing files are replaced only with --force."""
    names = ["energy_map.png", "energy_map.json"]
    write_set(out_dir, {"energy_map.png": lambda path: write_heatmap(rows, path, title),
                        "energy_map.json": lambda path: write_atomic(path, to_json(rows) + "\n")}, "--out", force)
    return [str(Path(out_dir) / n) for n in names]


@click.command("energy-map")
@click.option("--model", required=True, help="Model id, e.g. llama-3.1-405b-fp8.")
@click.option("--gpu", required=True, help="GPU id, e.g. h100.")
@click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel degree (GPUs per instance).")
@click.option("--inputs", default=",".join(str(2**k) for k in range(6, 16)), show_default=True,
              help="Input lengths, comma-separated tokens.")
@click.option("--outputs", default=",".join(str(2**k) for k in range(4, 14)), show_default=True,
              help="Output lengths, comma-separated tokens.")
@click.option("--batch", type=int, default=None,
              help="Sequences per instance (default: as many as the KV cache holds).")
@click.option("--tpot-ms", type=float, default=None, help="Largest batch whose step meets this TPOT, ms.")
@format_opt
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for energy_map.png (heatmap) and energy_map.json, written atomically.")
@click.option("--force", is_flag=True, help="Replace existing files in --out.")
@click.pass_context
def energy_map_cmd(ctx: click.Context, model: str, gpu: str, tp: int, inputs: str, outputs: str, batch: int | None,
                   tpot_ms: float | None, fmt: str, out_dir: str | None, force: bool) -> None:
    """J per output token, J per token and Wh per query over input x output lengths."""
    if batch is not None and tpot_ms is not None:
        raise FleetoptError("--batch and --tpot-ms: give at most one")
    if tpot_ms is not None and not 0 < tpot_ms < float("inf"):
        raise FleetoptError(f"--tpot-ms: must be a finite number > 0, got {tpot_ms:g}")
    if out_dir:                             # refused before the work, not after
        check_set_target(out_dir, ["energy_map.png", "energy_map.json"], "--out", force)
    ins, outs = ints(inputs, "--inputs"), ints(outputs, "--outputs")
    prof = make_profile("physical", model, gpu, tp, catalog_of(ctx))
    rows = energy_map(prof, ins, outs, batch, tpot_ms)
    how = f"batch {batch}" if batch else f"TPOT {tpot_ms:g} ms" if tpot_ms else "batch = KV cache limit"
    title = f"{prof.model.id} on {tp} x {prof.gpu.id}, {how}"
    files = _write_map(out_dir, rows, title, force) if out_dir else []
    if fmt == "table":
        click.echo(matrix_text(rows, title))
    else:
        emit(rows, fmt)
    if files and fmt == "table":
        click.echo("wrote " + ", ".join(files))
