"""``fleetopt law``, ``estimate`` and ``catalog``: one instance's physics, and the catalogs.

``law`` is the 1/W law: for each context window W, the sequences an instance serves at
saturation (n_max, KV-limited and capped by max_num_seqs), their step and power, and tokens
per joule = output tokens/s / instance W (and the paper's per-GPU convention beside it).
``estimate`` is one operating point (a batch of P + O token queries): sustained and pure
decode step, TTFT, power, energy per token and per query.  Both take ``--mode`` from the
profile registry (``fleetopt.profiles.MODES``) and the knobs a mode has (a DVFS power
cap, gpu_memory_utilization, data-parallel attention with expert parallelism).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleetopt.catalog import gpu_table, model_table
from fleetopt.cli.common import catalog_of, emit, format_opt, ints, mode_opt
from fleetopt.errors import FleetoptError
from fleetopt.law import estimate as estimate_point
from fleetopt.law import law_rows
from fleetopt.profiles import profile_with_knobs
from fleetopt.profiles.point import as_admission

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile


def _profile(ctx: click.Context, mode: str, model: str, gpu: str, tp: int, power_cap_w: float | None = None,
             gmu: float | None = None, dp: int = 1) -> Profile:
    """The profile the options name, each knob checked (``profile_with_knobs``)."""
    return profile_with_knobs(mode, model, gpu, tp, catalog_of(ctx), power_cap_w, gmu, dp)


@click.command()
@click.option("--model", required=True, help="Model id, e.g. llama-3.1-70b.")
@click.option("--gpu", required=True, help="GPU id, e.g. H100.")
@click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel degree (GPUs per instance).")
@click.option("--contexts", default="2048,4096,8192,16384,32768,65536,131072", show_default=True,
              help="Context windows, comma-separated tokens.")
@click.option("--output-tokens", type=int, default=512, show_default=True,
              help="Output tokens per sequence (physical mode; prompt = window - output).")
@click.option("--admission", type=click.Choice(["reserve", "paged"]), default="reserve", show_default=True)
@click.option("--power-cap-w", type=float, default=None, help="Per-GPU power cap (DVFS), W.")
@click.option("--gpu-memory-utilization", "gmu", type=float, default=None, help="vLLM gpu_memory_utilization (0.9).")
@mode_opt
@format_opt
@click.pass_context
def law(ctx: click.Context, model: str, gpu: str, tp: int, contexts: str, output_tokens: int, admission: str,
        power_cap_w: float | None, gmu: float | None, mode: str, fmt: str) -> None:
    """Tokens per joule against the context window at saturation (the 1/W law)."""
    if output_tokens <= 0:
        raise FleetoptError(f"output-tokens must be > 0, got {output_tokens}")
    prof = _profile(ctx, mode, model, gpu, tp, power_cap_w, gmu)
    rows = law_rows(prof, ints(contexts, "contexts"), output_tokens, as_admission(admission))
    emit(rows, fmt, f"{prof.model.id} on {tp} x {prof.gpu.id}, mode {mode}, admission {admission}")


@click.command()
@click.option("--model", required=True)
@click.option("--gpu", required=True)
@click.option("--tp", type=int, default=1, show_default=True)
@click.option("--dp", type=int, default=1, show_default=True,
              help="Data-parallel attention ranks with expert parallelism (MoE); the instance has tp x dp GPUs.")
@click.option("--batch", type=int, required=True, help="Sequences decoding together.")
@click.option("--prompt-tokens", type=int, required=True)
@click.option("--output-tokens", type=int, required=True)
@click.option("--power-cap-w", type=float, default=None, help="Per-GPU power cap (DVFS), W.")
@click.option("--gpu-memory-utilization", "gmu", type=float, default=None)
@mode_opt
@format_opt
@click.pass_context
def estimate(ctx: click.Context, model: str, gpu: str, tp: int, dp: int, batch: int, prompt_tokens: int,
             output_tokens: int, power_cap_w: float | None, gmu: float | None, mode: str, fmt: str) -> None:
    """One operating point: step time, TTFT, power and energy per token and per query."""
    prof = _profile(ctx, mode, model, gpu, tp, power_cap_w, gmu, dp)
    emit(estimate_point(prof, batch, prompt_tokens, output_tokens), fmt)


@click.command()
@click.argument("what", type=click.Choice(["gpus", "models"]))
@format_opt
@click.pass_context
def catalog(ctx: click.Context, what: str, fmt: str) -> None:
    """List the GPU or model catalog."""
    cat = catalog_of(ctx)
    emit(gpu_table(cat) if what == "gpus" else model_table(cat), fmt)
