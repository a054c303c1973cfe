"""Fitting the physical model's coefficients to measurements, and cross-validating the fit.

One global coefficient set (``Calibration``) is fitted jointly on every row of a measurement
table (``fleetopt.measurements``), together with two kinds of nuisance parameters that
belong to a data set, not to a GPU: the overheads of each non-default serving engine
(``Engine``, one per ``engine`` label) and the unknown mean prompt length of each ``task``.
Least squares on log residuals log(pred / meas) with a soft-L1 loss (robust to a few runs
in regimes the model does not describe), each (source, GPU, metric) group weighted equally,
inside ``BOUNDS``.  Rows whose batch does not fit the KV cache (batch scenarios) are left
out: there the engine preempts and recomputes, which the step model does not describe.

``cross_validate`` refits with one GPU (or one model family) held out and predicts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.catalog import Catalog
from fleetopt.measurements import METRICS, mape_pct, predict
from fleetopt.physics.calibration import (
    BOUNDS,
    DEFAULT,
    ENGINE_FIELDS,
    Calibration,
    Engine,
)

if TYPE_CHECKING:
    from pandas import DataFrame


#: Global coefficients the fit may move (each only when the data can identify it).
GLOBAL = ("eta_bw", "eta_flops", "eta_prefill", "static_scale",
          "mem_energy_scale", "flop_energy_scale") + ENGINE_FIELDS
#: Coefficients held at their documented values (not identifiable from serving runs).
FIXED = ("dvfs_exponent", "roof_p")
PROMPT_BOUNDS = (32.0, 16000.0)
#: A tie-breaking prior on every inferred prompt length, residual w log(p / 500) / log(4): a
#: prompt a factor of 4 from 500 tokens costs what one run predicted 5 % off does (w = 0.05,
#: the soft-L1 scale), so it moves only prompts the data leave nearly free (a synthetic
#: 120-token prompt comes back 13 % long, which moves its runs' predictions by under 2 %;
#: a 2,000-token one within 5 %: ``tests/test_energy_physics.py``).  GPQA's is one: its outputs
#: are ten times longer than any prompt, so the prompt moves a step's context by a few per cent,
#: and without the prior it ran to the 32-token bound (with it, the value in
#: ``benchmarks/results/fidelity.json``'s ``task_prompt_tokens``).
PROMPT_PRIOR_TOKENS, PROMPT_PRIOR_WEIGHT = 500.0, 0.05
#: Engine fields a labelled (non-reference) engine holds at a stated value instead of fitting:
#: the power of its overheads.  The shared data sets of other engines carry too few power rows to
#: separate it from static power (Argonne's vLLM of 2024: 13 runs; fitted, it lands anywhere from
#: 0.03 to 1.0 as one GPU or another is held out), and their engine, vLLM V0, runs its
#: per-sequence bookkeeping on the host between kernels while the GPU waits: 0 above static.
HELD_FOR_LABELLED_ENGINES = {"overhead_power_frac": 0.0}


@dataclass
class FitResult:
    """A fitted calibration with its nuisance parameters and the fit's residual summary."""

    cal: Calibration
    engines: dict[str, Engine] = field(default_factory=dict)
    prompt_by_task: dict[str, float] = field(default_factory=dict)
    cost: float = math.nan
    rows_used: int = 0


def _identifiable(df: DataFrame, name: str, catalog: Catalog | None = None) -> bool:
    """Whether the rows carry information on coefficient ``name`` (``moe_layer_us``: only with
    the catalog, which says which models are MoE)."""
    power = df.power_w_per_gpu.notna() | df.energy_per_output_token_j.notna()
    default_engine = df.engine.isin(["default", ""])
    if name in ("static_scale", "mem_energy_scale", "flop_energy_scale"):
        return bool(power.any())
    if name == "alltoall_us":
        return bool((default_engine & (df.dp > 1)).any())
    if name == "moe_layer_us":
        moe = np.array([catalog is not None and catalog.model(m).experts > 0 for m in df.model])
        return bool((default_engine.to_numpy() & moe).any())
    if name == "overhead_power_frac":
        return bool((default_engine & power).any())
    if name == "allreduce_us":
        return bool((default_engine & (df.tp > 1)).any())
    # eta_flops and eta_prefill are the default engine's GEMM efficiencies: another engine's rows
    # identify only their product with that engine's flops_scale, so they need default-engine rows
    if name == "eta_flops":
        return bool((default_engine & (df.scenario != "prefill")).any())
    if name == "eta_prefill":
        return bool((default_engine & (df.scenario == "prefill")).any())
    if name == "flops_scale":
        return False            # the reference engine defines eta_flops; only other engines scale it
    if name in ENGINE_FIELDS:
        return bool((default_engine & (df.scenario != "prefill")).any())
    return True


def _engine_fields(rows: DataFrame, catalog: Catalog) -> tuple[str, ...]:
    """The overheads a labelled engine's own rows identify (the others stay at the start
    values, except ``HELD_FOR_LABELLED_ENGINES``): per step, per layer and the GEMM factor
    always; per sequence with decode rows; all-reduce with TP > 1, all-to-all with DP > 1, per
    MoE layer with MoE models."""
    moe = any(catalog.model(m).experts > 0 for m in set(rows.model))
    use = {"step_fixed_ms": True, "layer_us": True, "flops_scale": True,
           "seq_us": bool((rows.scenario != "prefill").any()), "allreduce_us": bool((rows.tp > 1).any()),
           "alltoall_us": bool((rows.dp > 1).any()), "moe_layer_us": moe}
    return tuple(n for n in ENGINE_FIELDS if use.get(n, False))


def _weights(df: DataFrame, metric: str, used: np.ndarray) -> np.ndarray:
    """Each (source, GPU, metric) group carries equal total weight: 1 / sqrt(rows in the group).
    By GPU too: the shared efficiencies are meant to transfer across GPUs, so a GPU with many
    runs in a source (Argonne: 461 MI300X runs against 75 A100 runs) does not set them alone."""
    w = np.zeros(len(df))
    for _, idx in df[used].groupby(["source", "gpu"]).indices.items():
        rows = np.flatnonzero(used)[idx]
        w[rows] = 1.0 / math.sqrt(len(rows))
    return w


def fit(df: DataFrame, catalog: Catalog, start: Calibration = DEFAULT, names: tuple[str, ...] | None = None,
        fixed_engines: dict[str, Engine] | None = None, fixed_prompts: dict[str, float] | None = None,
        max_nfev: int = 200, unfitted: frozenset[str] = frozenset()) -> FitResult:
    """Least-squares fit of ``names`` (default: every identifiable global coefficient), the
    overheads of every non-default engine label its rows identify and the prompt length of every task with
    unknown prompts, except those given in ``fixed_engines`` / ``fixed_prompts``.
    ``df`` is a validated measurement table (``measurements.validate``); rows of the models in
    ``unfitted`` (runs a documented engine defect distorts) do not enter the fit."""
    from scipy.optimize import least_squares

    fixed_engines, fixed_prompts = dict(fixed_engines or {}), dict(fixed_prompts or {})
    names = tuple(n for n in (names or GLOBAL) if _identifiable(df, n, catalog))
    eng_labels = sorted(set(df.engine) - {"default", ""} - set(fixed_engines))
    tasks = sorted(set(df.task[df.prompt_tokens.isna()]) - {""} - set(fixed_prompts))
    x0, lo, hi = [], [], []
    for n in names:
        x0.append(start.get(n))
        lo.append(BOUNDS[n][0])
        hi.append(BOUNDS[n][1])
    eng_fields = {label: _engine_fields(df[df.engine == label], catalog) for label in eng_labels}
    for label in eng_labels:
        for n in eng_fields[label]:
            x0.append(start.get(n))
            lo.append(BOUNDS[n][0])
            hi.append(BOUNDS[n][1])
    for _ in tasks:
        x0.append(math.log(PROMPT_PRIOR_TOKENS))
        lo.append(math.log(PROMPT_BOUNDS[0]))
        hi.append(math.log(PROMPT_BOUNDS[1]))
    x0 = np.clip(np.asarray(x0, float), np.asarray(lo) + 1e-9, np.asarray(hi) - 1e-9)

    def unpack(x: np.ndarray) -> tuple[Calibration, dict[str, Engine], dict[str, float]]:
        """The parameter vector as (calibration, engines by label, prompt tokens by task)."""
        k = len(names)
        cal = start.with_(**dict(zip(names, map(float, x[:k]))))
        engines = dict(fixed_engines)
        for label in eng_labels:
            ne = len(eng_fields[label])
            engines[label] = start.engine.with_(**HELD_FOR_LABELLED_ENGINES,
                                                **dict(zip(eng_fields[label], map(float, x[k:k + ne]))))
            k += ne
        prompts = dict(fixed_prompts)
        prompts.update({t: float(math.exp(v)) for t, v in zip(tasks, x[k:])})
        return cal, engines, prompts

    first = predict(df, start, catalog, *unpack(x0)[1:])
    used_rows = first.kv_fits.to_numpy() & ~df.model.isin(sorted(unfitted)).to_numpy()
    weights = {m: _weights(df, m, used_rows & df[m].notna().to_numpy()) for m in METRICS}

    def residuals(x: np.ndarray) -> np.ndarray:
        """Weighted log residuals log(pred / meas) of every metric on the rows used."""
        cal, engines, prompts = unpack(x)
        p = predict(df, cal, catalog, engines, prompts)
        parts: list[np.ndarray] = []
        for m in METRICS:
            meas = df[m].to_numpy(float)
            sel = used_rows & np.isfinite(meas)
            if sel.any():
                pred = p[f"{m}_pred"].to_numpy(float)[sel]
                r = np.log(np.maximum(pred, 1e-12) / meas[sel])
                parts.append(np.where(np.isfinite(r), r, 5.0) * weights[m][sel])
        log_p = x[len(x) - len(tasks):]
        parts.append(PROMPT_PRIOR_WEIGHT * (log_p - math.log(PROMPT_PRIOR_TOKENS)) / math.log(4.0))
        return np.concatenate(parts)

    sol = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, max_nfev=max_nfev,
                        x_scale="jac")
    cal, engines, prompts = unpack(sol.x)
    return FitResult(cal, engines, prompts, float(sol.cost), int(used_rows.sum()))


def gpu_family(gpu_id: str) -> str:
    """The chip a GPU id is built on (A100 40 GB and 80 GB are one chip): the id's first word."""
    return gpu_id.split("-")[0]


def model_family(model_id: str) -> str:
    """A model's family for leave-one-family-out: llama-2, llama-3(.x), qwen3, mixtral, gpt-oss ..."""
    parts = model_id.split("-")
    if parts[0] == "llama":
        return "llama-" + parts[1].split(".")[0]
    return parts[0] if parts[0] != "gpt" else "gpt-oss"


def summarize(df: DataFrame, pred: DataFrame) -> dict[str, float]:
    """MAPE per metric (%) over rows whose batch fits the KV cache, and the row counts."""
    ok = pred.kv_fits.to_numpy()
    out: dict[str, float] = {}
    for m in METRICS:
        meas = df[m].to_numpy(float)[ok]
        n = int(np.isfinite(meas).sum())
        if n:
            out[m] = mape_pct(pred[f"{m}_pred"].to_numpy(float)[ok], meas)
            out[f"{m}_n"] = n
    return out


def signed_by_model(df: DataFrame, pred: DataFrame) -> dict[str, dict[str, float]]:
    """Mean signed error per model and metric, % (mean of pred / meas - 1 over rows whose
    batch fits the KV cache): where a held-out GPU's error sits and which way it leans."""
    ok = pred.kv_fits.to_numpy()
    out: dict[str, dict[str, float]] = {}
    for model, idx in df.groupby("model", sort=True).indices.items():
        idx = idx[ok[idx]]
        cells = {"rows": float(idx.size)}
        for m in METRICS:
            meas, p = df[m].to_numpy(float)[idx], pred[f"{m}_pred"].to_numpy(float)[idx]
            good = np.isfinite(meas) & np.isfinite(p) & (meas > 0)
            if good.any():
                cells[m] = float(np.mean(p[good] / meas[good] - 1.0) * 100.0)
        out[str(model)] = cells
    return out


def cross_validate(df: DataFrame, catalog: Catalog, by: str = "gpu", full: FitResult | None = None,
                   start: Calibration = DEFAULT, max_nfev: int = 200,
                   unfitted: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Hold out each GPU chip (``by="gpu"``) or model family (``by="model"``) in turn, refit on
    the rest and predict the held-out rows (all of them: ``unfitted`` models are left out of
    the fits, as in ``fit``, and scored).  Nuisances that only the held-out rows identify
    (an engine or task seen nowhere else; the default engine's overheads and GEMM efficiency
    when the held-out rows are all its rows) are taken from ``full``, the fit on every row, and
    the row says so in ``nuisance_from_full``."""
    key = df.gpu.map(gpu_family) if by == "gpu" else df.model.map(model_family)
    full = full or fit(df, catalog, start, max_nfev=max_nfev, unfitted=unfitted)
    out = []
    for held in sorted(set(key)):
        test, train = df[key == held].reset_index(drop=True), df[key != held].reset_index(drop=True)
        fixed_e = {e: full.engines[e] for e in set(test.engine) - set(train.engine) if e in full.engines}
        fixed_t = {t: full.prompt_by_task[t] for t in set(test.task) - set(train.task) if t in full.prompt_by_task}
        # coefficients only the held-out rows identify (the default engine's overheads and GEMM
        # efficiency when they hold every default-engine row) are nuisances from ``full`` too
        held_names = [n for n in GLOBAL if _identifiable(df, n, catalog) and not _identifiable(train, n, catalog)]
        r = fit(train, catalog, start.with_(**{n: full.cal.get(n) for n in held_names}), fixed_engines=fixed_e,
                fixed_prompts=fixed_t, max_nfev=max_nfev, unfitted=unfitted)
        engines = {**full.engines, **r.engines}
        prompts = {**full.prompt_by_task, **r.prompt_by_task}
        pred = predict(test, r.cal, catalog, engines, prompts)
        row = {"held_out": held, "rows": len(test), **summarize(test, pred),
               "nuisance_from_full": ", ".join(sorted(list(fixed_e) + list(fixed_t)) + held_names),
               "signed_pct_by_model": signed_by_model(test, pred)}
        if unfitted:    # the same fold scored without the unfitted models' rows, beside the full score
            keep = ~test.model.isin(sorted(unfitted)).to_numpy()
            row["without_unfitted"] = {"held_out": held, "rows": int(keep.sum()),
                                       **summarize(test[keep].reset_index(drop=True),
                                                   pred[keep].reset_index(drop=True))}
        out.append(row)
    return out
