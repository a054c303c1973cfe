"""The energy map: energy per output token, per token and per query over a grid of input x
output lengths on one (model, GPU, TP) instance (``fleetopt energy-map``).

Each cell is the closed-loop steady state of ``batch`` sequences of I input and O output
tokens (``Profile.steady_state``: prompts prefilled in the same steps, batch x I/O prompt
tokens per step), so a meter on the instance sees prefill and decode together:

* J per output token = instance W / output tokens/s;
* J per token        = J per output token x O / (I + O)   (input and output tokens);
* Wh per query       = J per output token x O / 3600.

The batch of a cell is, in this order: the given ``batch`` (a cell whose KV cache cannot
hold it is reported as not fitting), the largest batch whose step meets ``tpot_ms``, or
the largest batch the paged KV cache holds (capped by max_num_seqs).  The most efficient
cell is the one with the fewest J per output token; the region is every cell within
``region`` (10 %) of it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.batching import tpot_batch_cap
from fleetopt.errors import FleetoptError

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile

DEFAULT_INPUTS = tuple(2**k for k in range(6, 16))       # 64 .. 32768
DEFAULT_OUTPUTS = tuple(2**k for k in range(4, 14))      # 16 .. 8192
REGION = 0.10


def j_per_output_token(instance_power_w: float, output_tok_s: float) -> float:
    """J per output token = instance W / output tokens/s (prefill work inside the steps)."""
    return instance_power_w / output_tok_s if output_tok_s > 0 else math.inf


def j_per_token(j_per_out_j: float, input_tokens: float, output_tokens: float) -> float:
    """J per token of either kind: J/output token x O / (I + O) (the query's energy over its tokens)."""
    return j_per_out_j * output_tokens / (input_tokens + output_tokens)


def wh_per_query_of_cell(j_per_out_j: float, output_tokens: float) -> float:
    """Wh per query = J/output token x O / 3600 J/Wh."""
    return j_per_out_j * output_tokens / 3600.0


def _check_lengths(vals: Sequence[int], flag: str) -> list[int]:
    vals = [int(v) for v in vals]
    if not vals:
        raise FleetoptError(f"{flag}: the grid is empty; give at least one length")
    bad = [v for v in vals if v <= 0]
    if bad:
        raise FleetoptError(f"{flag}: every length must be > 0, got {bad[0]}")
    return sorted(set(vals))


def energy_map(profile: Profile, inputs: Sequence[int] = DEFAULT_INPUTS, outputs: Sequence[int] = DEFAULT_OUTPUTS,
               batch: int | None = None, tpot_ms: float | None = None, region: float = REGION) -> list[dict[str, Any]]:
    """One row per (input, output) cell, inputs outer: J/output token = instance W / output
    tokens/s at the cell's steady state (module docstring).  Rows of cells that do not fit
    carry ``fits: False``, the reason, and NaN figures."""
    ins, outs = _check_lengths(inputs, "--inputs"), _check_lengths(outputs, "--outputs")
    if batch is not None and tpot_ms is not None:
        raise FleetoptError("--batch and --tpot-ms: give at most one")
    if batch is not None and batch <= 0:
        raise FleetoptError(f"--batch: must be > 0, got {batch}")
    if tpot_ms is not None and not tpot_ms > 0:
        raise FleetoptError(f"--tpot-ms: must be > 0, got {tpot_ms:g}")
    grid_in, grid_out = (a.ravel().astype(float) for a in np.meshgrid(ins, outs, indexing="ij"))
    held = grid_in + grid_out / 2.0                                  # time-average tokens a sequence holds
    cap = np.asarray(profile.concurrency(grid_in + grid_out, held, "paged"), np.int64) * np.ones(grid_in.size, np.int64)
    cap = np.where(grid_in + grid_out > profile.kv_capacity_tokens(), 0, cap)      # one whole sequence must fit
    reason = np.where(cap <= 0, "kv", "")
    if batch is not None:
        b = np.full(grid_in.size, int(batch), np.int64)
        reason = np.where((b > cap) & (reason == ""), "kv", reason)
    elif tpot_ms is not None:
        ok = cap > 0
        b = np.zeros(grid_in.size, np.int64)
        if ok.any():
            slots, _ = tpot_batch_cap(profile, cap[ok], held[ok], grid_in[ok] / grid_out[ok], grid_in[ok] / 2.0,
                                      tpot_ms)
            b[ok] = slots
        reason = np.where((b <= 0) & (reason == ""), "tpot", reason)
    else:
        b = cap
    fit = reason == ""
    if not fit.any():
        raise FleetoptError("energy-map: no cell of the grid fits (KV cache or TPOT); try shorter lengths or "
                            "a smaller --batch")
    rows: list[dict[str, Any]] = []
    j_out = np.full(grid_in.size, np.nan)
    steady = getattr(profile, "steady_state", None)      # the physical modes model the closed loop
    if steady is None:
        raise FleetoptError(f"energy-map: the {profile.mode} profile has no closed-loop steady state")
    pts = [steady(float(bb), float(i), float(o)) for bb, i, o in zip(b[fit], grid_in[fit], grid_out[fit])]
    ops = {"step_ms": np.array([float(op.step_ms) for op in pts]),
           "instance_power_w": np.array([float(op.instance_power_w) for op in pts]),
           "output_tokens_per_s": np.array([float(op.decode_tokens_per_s) for op in pts])}
    j_out[fit] = ops["instance_power_w"] / ops["output_tokens_per_s"]
    best = float(np.nanmin(j_out))
    pos = np.cumsum(fit) - 1
    why = {"kv": "KV cache cannot hold the batch", "tpot": "TPOT unreachable at batch 1"}
    for k in range(grid_in.size):
        row: dict[str, Any] = {"input_tokens": int(grid_in[k]), "output_tokens": int(grid_out[k]), "fits": bool(fit[k]),
               "batch": int(b[k]) if fit[k] else 0, "kv_batch_cap": int(cap[k])}
        if fit[k]:
            j = float(j_out[k])
            row.update({"j_per_output_token": j, "j_per_token": j_per_token(j, grid_in[k], grid_out[k]),
                        "wh_per_query": wh_per_query_of_cell(j, grid_out[k]),
                        "output_tokens_per_joule": 1.0 / j, "relative_efficiency": best / j,
                        "step_ms": float(ops["step_ms"][pos[k]]),
                        "instance_power_w": float(ops["instance_power_w"][pos[k]]),
                        "output_tokens_per_s": float(ops["output_tokens_per_s"][pos[k]]),
                        "peak": j == best, "efficient_region": j <= best * (1.0 + region), "note": ""})
        else:
            row.update({"j_per_output_token": math.nan, "j_per_token": math.nan, "wh_per_query": math.nan,
                        "output_tokens_per_joule": math.nan, "relative_efficiency": math.nan, "step_ms": math.nan,
                        "instance_power_w": math.nan, "output_tokens_per_s": math.nan, "peak": False,
                        "efficient_region": False, "note": why[str(reason[k])]})
        rows.append(row)
    first = [r for r in rows if r["peak"]]
    for r in first[1:]:               # ties: the first cell (shortest input, then output) is the peak
        r["peak"] = False
    return rows


def peak_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The most efficient cell (fewest J per output token)."""
    return next(r for r in rows if r["peak"])


def matrix_text(rows: list[dict[str, Any]], title: str) -> str:
    """J per output token as an input (rows) x output (columns) table; '*' marks the peak,
    '+' the cells within the efficient region, '-' cells that do not fit."""
    ins = sorted({r["input_tokens"] for r in rows})
    outs = sorted({r["output_tokens"] for r in rows})
    cell = {(r["input_tokens"], r["output_tokens"]): r for r in rows}

    def fmt(r: dict[str, Any]) -> str:
        if not r["fits"]:
            return "-"
        j = r["j_per_output_token"]
        s = f"{j:.3g}"
        return s + ("*" if r["peak"] else "+" if r["efficient_region"] else "")

    head = ["in \\ out"] + [str(o) for o in outs]
    body = [[str(i)] + [fmt(cell[(i, o)]) for o in outs] for i in ins]
    w = [max(len(x[c]) for x in [head] + body) for c in range(len(head))]
    lines = [title, "  ".join(h.rjust(w[c]) for c, h in enumerate(head))]
    lines += ["  ".join(x.rjust(w[c]) for c, x in enumerate(r)) for r in body]
    p = peak_row(rows)
    lines.append(f"J per output token; * most efficient cell (input {p['input_tokens']}, output "
                 f"{p['output_tokens']}, batch {p['batch']}: {p['j_per_output_token']:.4g} J/token, "
                 f"{p['wh_per_query']:.4g} Wh/query); + within {100 * REGION:.0f} % of it; - does not fit")
    return "\n".join(lines)


def write_heatmap(rows: list[dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """A PNG heatmap of J per output token (log colour scale), the peak starred and the
    efficient region outlined, written atomically (temporary file, then rename)."""
    from pathlib import Path

    import matplotlib

    from fleetopt.atomic import temp_name

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    ins = sorted({r["input_tokens"] for r in rows})
    outs = sorted({r["output_tokens"] for r in rows})
    z = np.full((len(ins), len(outs)), np.nan)
    for r in rows:
        if r["fits"]:
            z[ins.index(r["input_tokens"]), outs.index(r["output_tokens"])] = r["j_per_output_token"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(outs), 1.2 + 0.5 * len(ins)))
    ax.set_facecolor("0.85")                            # cells that do not fit
    im = ax.imshow(z, origin="lower", cmap="viridis_r", norm=LogNorm(np.nanmin(z), np.nanmax(z)), aspect="auto")
    fig.colorbar(im, ax=ax, label="J per output token")
    for r in rows:
        i, o = ins.index(r["input_tokens"]), outs.index(r["output_tokens"])
        if r["efficient_region"]:
            ax.add_patch(Rectangle((o - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        if r["peak"]:
            ax.plot(o, i, marker="*", color="red", markersize=14)
        elif not r["fits"]:
            ax.text(o, i, "x", ha="center", va="center", color="0.4", fontsize=8)
    ax.set_xticks(range(len(outs)), [str(o) for o in outs], rotation=45)
    ax.set_yticks(range(len(ins)), [str(i) for i in ins])
    ax.set_xlabel("output tokens")
    ax.set_ylabel("input tokens")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / temp_name(p.name, ".png")        # created as any new file (umask), unlike mkstemp's 0600
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
