"""Measurements of serving runs in one documented table, and the physical model's predictions of them.

The CSV schema (``fleetopt calibrate`` reads it; ``benchmarks/_measured.py`` converts the
shared data sets to it), one row per run:

==========================  ======================================================================
column                      meaning
==========================  ======================================================================
``gpu``                     catalog GPU id or alias (required)
``model``                   catalog model id or alias (required)
``tp``, ``dp``              tensor-parallel degree; data-parallel ranks with expert parallelism
                            (dp > 1 only for MoE; GPUs per instance = tp x dp)
``batch``                   mean running batch (steady) or the batch size (batch, prefill)
``prompt_tokens``           mean prompt length; empty = unknown, inferred per ``task`` by the fit
``output_tokens``           mean output length
``scenario``                ``steady`` (closed-loop serving, prefill chunks mixed into decode
                            steps; default), ``batch`` (one offline batch: all prompts
                            prefilled, then ``output_tokens`` decode steps) or ``prefill``
                            (time to prefill one batch of prompts)
``engine``                  serving-engine label; rows of one label share engine overheads
                            (default ``default``: the calibration's own engine)
``task``                    label of rows sharing one unknown prompt length (default: none)
metrics (any of)            ``power_w_per_gpu`` (mean board power per GPU), ``itl_ms`` (median
                            inter-token latency, steady), ``throughput_tok_s`` (output tokens
                            per second of the instance), ``energy_per_output_token_j`` (all
                            GPUs of the instance), ``prefill_ms`` (prefill scenario)
==========================  ======================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fleetopt.catalog import Catalog
from fleetopt.errors import FleetoptError
from fleetopt.physics.calibration import Calibration, Engine
from fleetopt.physics.kv import DEFAULT_MAX_BATCHED_TOKENS, default_max_num_seqs
from fleetopt.profiles.physical import PhysicalProfile

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from pandas import DataFrame

REQUIRED = ("gpu", "model", "tp", "batch", "output_tokens")
OPTIONAL = ("dp", "prompt_tokens", "scenario", "engine", "task", "source")
METRICS = ("power_w_per_gpu", "itl_ms", "throughput_tok_s", "energy_per_output_token_j", "prefill_ms")
SCENARIOS = ("steady", "batch", "prefill")


@dataclass(frozen=True)
class Group:
    """Rows sharing a (gpu, model, tp, dp, scenario, engine): predicted in one array call."""

    gpu: str
    model: str
    tp: int
    dp: int
    scenario: str
    engine: str
    index: np.ndarray
    """Row positions in the table."""


def validate(df: DataFrame, catalog: Catalog) -> DataFrame:
    """Check a measurement table; return it with defaults filled, or raise a one-line
    ``FleetoptError`` naming the row (1-based, as in the file after its header) and column."""
    import pandas as pd

    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FleetoptError(f"measurements: missing column '{missing[0]}' (required: {', '.join(REQUIRED)})")
    if not any(m in df.columns for m in METRICS):
        raise FleetoptError(f"measurements: no metric column (give any of {', '.join(METRICS)})")
    unknown = [c for c in df.columns if c not in REQUIRED + OPTIONAL + METRICS]
    if unknown:
        raise FleetoptError(f"measurements: unknown column '{unknown[0]}'")
    if len(df) == 0:
        raise FleetoptError("measurements: no rows")
    df = df.copy()
    for col, default in (("dp", 1), ("scenario", "steady"), ("engine", "default"), ("task", ""),
                         ("source", ""), ("prompt_tokens", float("nan"))):
        if col not in df.columns:
            df[col] = default
    for col in ("scenario", "engine", "task", "source"):
        df[col] = df[col].fillna({"scenario": "steady", "engine": "default"}.get(col, "")).astype(str)
    for col in ("tp", "dp", "batch", "output_tokens", "prompt_tokens") + tuple(m for m in METRICS if m in df.columns):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna() & (df[col].astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FleetoptError(f"measurements: row {i + 1}, column '{col}': not a number: '{df[col].iloc[i]}'")
        df[col] = num
    for col in ("tp", "dp", "batch", "output_tokens"):
        bad = ~(df[col] > 0) | ~np.isfinite(df[col])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FleetoptError(f"measurements: row {i + 1}, column '{col}': must be a positive number, "
                                f"got {df[col].iloc[i]}")
    for col in ("prompt_tokens",) + tuple(m for m in METRICS if m in df.columns):
        bad = df[col].notna() & ~(df[col] > 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FleetoptError(f"measurements: row {i + 1}, column '{col}': must be > 0, got {df[col].iloc[i]}")
    bad_sc = ~df.scenario.isin(SCENARIOS)
    if bad_sc.any():
        i = int(np.flatnonzero(bad_sc.to_numpy())[0])
        raise FleetoptError(f"measurements: row {i + 1}, column 'scenario': must be one of {', '.join(SCENARIOS)}, "
                            f"got '{df.scenario.iloc[i]}'")
    no_prompt = df.prompt_tokens.isna() & (df.task == "")
    if no_prompt.any():
        i = int(np.flatnonzero(no_prompt.to_numpy())[0])
        raise FleetoptError(f"measurements: row {i + 1}, column 'prompt_tokens': empty, and no 'task' to infer it for")
    gpus, models = [], []
    for i, (g, m) in enumerate(zip(df.gpu, df.model)):
        try:
            gpus.append(catalog.gpu(str(g)).id)
        except (ValueError, FleetoptError):
            raise FleetoptError(f"measurements: row {i + 1}, column 'gpu': unknown GPU '{g}'") from None
        try:
            models.append(catalog.model(str(m)).id)
        except (ValueError, FleetoptError):
            raise FleetoptError(f"measurements: row {i + 1}, column 'model': unknown model '{m}'") from None
    df["gpu"], df["model"] = gpus, models
    for c in ("tp", "dp"):
        df[c] = df[c].astype(int)
    for m in METRICS:
        if m not in df.columns:
            df[m] = np.nan
    return df.reset_index(drop=True)


def groups(df: DataFrame) -> list[Group]:
    """Rows grouped by everything a profile is built from."""
    keys = ["gpu", "model", "tp", "dp", "scenario", "engine"]
    out = []
    for (gpu, model, tp, dp, scenario, engine), idx in df.groupby(keys, sort=True).indices.items():
        out.append(Group(gpu, model, tp, dp, scenario, engine, index=np.asarray(idx)))
    return out


def predict(df: DataFrame, cal: Calibration, catalog: Catalog, engines: dict[str, Engine] | None = None,
            prompt_by_task: dict[str, float] | None = None,
            chunk_tokens: int = DEFAULT_MAX_BATCHED_TOKENS) -> DataFrame:
    """Predicted metrics for every row (a DataFrame with ``<metric>_pred`` columns and
    ``kv_fits``: whether the batch's KV fits the instance's cache, for batch scenarios).

    * steady: the closed-loop steady state (``PhysicalProfile.steady_state``): throughput =
      batch / sustained step, power = sustained per-GPU power, median ITL = the pure decode
      step (a median skips the steps that carry a prompt's prefill; at very large batches
      most steps carry some, and the median ITL measured lies between the two: tested, the
      sustained step there fits worse, 23 % against 17 % leave-one-GPU-out);
    * batch: latency = prefill of batch x prompt tokens in chunks of ``chunk_tokens`` plus
      ``output_tokens`` decode steps at the mean context prompt + output/2 (exact for the
      parts linear in context); power = energy / latency;
    * prefill: the profile's prefill time of one prompt (batch 1) or of batch x prompt tokens.
    """
    import pandas as pd

    engines = engines or {}
    prompt_by_task = prompt_by_task or {}
    prompt = df.prompt_tokens.to_numpy(float).copy()
    for task, p in prompt_by_task.items():
        sel = np.isnan(prompt) & (df.task.to_numpy() == task)
        prompt[sel] = p
    n = len(df)
    out = {f"{m}_pred": np.full(n, np.nan) for m in METRICS}
    kv_fits = np.ones(n, bool)
    for g in groups(df):
        c = cal if g.engine in ("default", "") or g.engine not in engines else cal.with_(engine=engines[g.engine])
        gpu = catalog.gpu(g.gpu)        # the runs' engines at vLLM's default max_num_seqs for the GPU (KV reserve)
        prof = PhysicalProfile(catalog.model(g.model), gpu, g.tp, c, dp=g.dp, chunk_tokens=chunk_tokens,
                               max_num_seqs=default_max_num_seqs(gpu))
        i = g.index
        b = df.batch.to_numpy(float)[i]
        o = df.output_tokens.to_numpy(float)[i]
        p = prompt[i]
        gpus = g.tp * g.dp
        if g.scenario == "steady":
            op = prof.steady_state(b, p, o)
            tok_s = np.asarray(op.decode_tokens_per_s, float)
            out["itl_ms_pred"][i] = op.decode_step_ms
            out["throughput_tok_s_pred"][i] = tok_s
            out["power_w_per_gpu_pred"][i] = op.power_per_gpu_w
            out["energy_per_output_token_j_pred"][i] = gpus * np.asarray(op.power_per_gpu_w) / tok_s
        elif g.scenario == "batch":
            kv_fits[i] = b * (p + o) <= prof.kv_capacity_tokens()
            dec = prof.operating_point(b, p + o / 2.0, decode=False)
            t_dec_s = o * np.asarray(dec.step_ms) * 1e-3
            e_dec_j = t_dec_s * np.asarray(dec.power_per_gpu_w)
            total_pf = b * p
            n_full = np.floor(total_pf / chunk_tokens)
            rem = total_pf - n_full * chunk_tokens
            full = prof.operating_point(np.zeros_like(b), 0.0, np.full_like(b, chunk_tokens), p / 2.0, decode=False)
            last = prof.operating_point(np.zeros_like(b), 0.0, rem, p / 2.0, decode=False)
            t_pf_s = (n_full * np.asarray(full.step_ms) + np.where(rem > 0, np.asarray(last.step_ms), 0.0)) * 1e-3
            e_pf_j = (n_full * np.asarray(full.step_ms) * np.asarray(full.power_per_gpu_w)
                      + np.where(rem > 0, np.asarray(last.step_ms) * np.asarray(last.power_per_gpu_w), 0.0)) * 1e-3
            lat_s = t_dec_s + t_pf_s
            out["throughput_tok_s_pred"][i] = b * o / lat_s
            out["power_w_per_gpu_pred"][i] = (e_dec_j + e_pf_j) / lat_s
            out["energy_per_output_token_j_pred"][i] = gpus * (e_dec_j + e_pf_j) / (b * o)
        else:
            out["prefill_ms_pred"][i] = prof.prefill_ms(b * p)
    res = pd.DataFrame(out)
    res["kv_fits"] = kv_fits
    res["prompt_tokens_used"] = prompt
    return res


def mape_pct(pred: ArrayLike, meas: ArrayLike) -> float:
    """Mean absolute percentage error over rows where both are finite: mean |pred/meas - 1| x 100."""
    p, m = np.asarray(pred, float), np.asarray(meas, float)
    ok = np.isfinite(p) & np.isfinite(m) & (m > 0)
    return float(np.mean(np.abs(p[ok] / m[ok] - 1.0)) * 100) if ok.any() else math.nan
