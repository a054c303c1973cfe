"""The shared measurement sets (../shared/data/measured) converted to fleetopt's measurement schema.

Never copies the data: reads the CSVs in place.  ``load_all(catalog)`` returns one DataFrame
in the schema of ``fleetopt.measurements`` with a ``source`` column:

* ``mlenergy``: ML.ENERGY v3 H100, vLLM 0.11 (tasks lm-arena-chat, gpqa, sourcegraph-fim;
  prompt lengths unpublished: left empty, inferred per task); the MoE runs with expert
  parallelism are tensor-parallel over all their GPUs (see ``mlenergy``);
* ``argonne-throughput`` / ``argonne-power``: Argonne LLM-Inference-Bench, one offline batch
  with input = output length, vLLM of 2024 (engine ``vllm-2024``; ``vllm-2024-rocm`` on
  MI300X); A100 rows are Polaris's A100-SXM4-40GB;
* ``splitwise``: Splitwise Llama-2-70B prefill times at batch 1 (DGX-A100 80 GB, DGX-H100).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured"
MLENERGY_FILES = ("mlenergy_v3_h100_lm_arena_chat.csv", "mlenergy_v3_h100_gpqa_sourcegraph_fim.csv")
ARGONNE_THROUGHPUT = "argonne_llm_inference_bench_vllm_throughput.csv"
ARGONNE_POWER = "argonne_llm_inference_bench_power.csv"
SPLITWISE = "splitwise_perf_model.csv"
ARGONNE_GPUS = {"Nvidia A100 GPU": "a100-sxm-40gb", "Nvidia H100 GPU": "h100-sxm", "AMD MI300X GPU": "mi300x"}
SPLITWISE_GPUS = {"a100-80gb": "a100-sxm-80gb", "h100-80gb": "h100-sxm"}
#: The engine of the ML.ENERGY runs (vLLM 0.11, V1 engine, CUDA graphs): the packaged calibration's
#: engine, so their rows carry the label ``default`` (its overheads and GEMM efficiencies are the
#: calibration's own; every other engine's GEMM efficiency is a fraction ``flops_scale`` of it).
REFERENCE_ENGINE = "vllm-0.11"


def available() -> bool:
    """True when the shared data folder is beside the repository."""
    return all((DATA / f).exists() for f in MLENERGY_FILES + (ARGONNE_THROUGHPUT, ARGONNE_POWER, SPLITWISE))


def _known(catalog, col) -> np.ndarray:
    ok = []
    for v in col:
        try:
            catalog.model(str(v))
            ok.append(True)
        except ValueError:
            ok.append(False)
    return np.asarray(ok)


def mlenergy(catalog) -> pd.DataFrame:
    """ML.ENERGY v3 H100 runs of catalog models (all three tasks)."""
    d = pd.concat([pd.read_csv(DATA / f) for f in MLENERGY_FILES], ignore_index=True)
    d = d[_known(catalog, d.model_id)]
    # The runs were launched as ``vllm serve --tensor-parallel-size <num_gpus>`` unless the run's
    # config sets ``data-parallel-size`` (github.com/ml-energy/benchmark, mlenergy/benchmark/llm/
    # benchmark.py); ``enable-expert-parallel`` then shards the experts over those TP ranks (vLLM:
    # EP = TP x DP, attention stays tensor-parallel).  The data set's ``tensor_parallel`` column
    # reads 1 for those runs only because its loader defaults TP to 1 when EP > 1
    # (github.com/ml-energy/data, mlenergy_data/records/runs.py, _load_parallelization).
    dp = d.data_parallel.clip(lower=1)
    return pd.DataFrame({
        "gpu": "h100-sxm", "model": d.model_id, "tp": d.num_gpus // dp, "dp": dp,
        "batch": d.avg_batch_size, "prompt_tokens": np.nan, "output_tokens": d.avg_output_len,
        "scenario": "steady", "engine": "default", "task": d.task, "source": "mlenergy",
        "power_w_per_gpu": d.avg_power_watts_per_gpu, "itl_ms": d.median_itl_ms,
        "throughput_tok_s": d.output_throughput_tokens_per_sec, "energy_per_output_token_j": d.energy_per_token_joules,
    })


def argonne_throughput(catalog) -> pd.DataFrame:
    """Argonne vLLM one-batch runs: output tokens/s = batch x length / latency."""
    d = pd.read_csv(DATA / ARGONNE_THROUGHPUT)
    d = d[_known(catalog, d.Model)]
    length, b = d.input_len_eq_output_len, d["Batch Size"]
    return pd.DataFrame({
        "gpu": d.Hardware.map(ARGONNE_GPUS), "model": d.Model, "tp": d.tp, "dp": 1, "batch": b,
        "prompt_tokens": length, "output_tokens": length, "scenario": "batch",
        "engine": np.where(d.Hardware.str.startswith("AMD"), "vllm-2024-rocm", "vllm-2024"), "task": "",
        "source": "argonne-throughput", "throughput_tok_s": b * length / d.latency_s,
    })


#: Engines of the Argonne power runs used in the fit.  TensorRT-LLM and DeepSpeed-MII were tried
#: as engines of their own: the A100 cross-validated power error rose from 6.6 % to 12.3 % (the
#: DeepSpeed-MII runs exist on A100 only, so their engine cannot be told from the GPU) and the
#: H100 figures did not move, so only vLLM's runs are used.
ARGONNE_ENGINES = {"vLLM": "vllm-2024"}


def argonne_power(catalog) -> pd.DataFrame:
    """Argonne single-GPU power runs served by vLLM (see ``ARGONNE_ENGINES``)."""
    d = pd.read_csv(DATA / ARGONNE_POWER)
    d = d[d.Framework.isin(ARGONNE_ENGINES) & _known(catalog, d.Model)]
    length, b = d.input_len_eq_output_len, d["Batch Size"]
    return pd.DataFrame({
        "gpu": d.Hardware.map(ARGONNE_GPUS), "model": d.Model, "tp": d["Num of Hardware"], "dp": 1, "batch": b,
        "prompt_tokens": length, "output_tokens": length, "scenario": "batch", "engine": d.Framework.map(ARGONNE_ENGINES),
        "task": "",
        "source": "argonne-power", "power_w_per_gpu": d.avg_power_w_gpu0, "throughput_tok_s": d.output_tok_s,
        "energy_per_output_token_j": d.j_per_output_token_gpu0,
    })


def splitwise(catalog) -> pd.DataFrame:
    """Splitwise Llama-2-70B prefill of one prompt (mean of the repeated profiles)."""
    d = pd.read_csv(DATA / SPLITWISE)
    d = d[(d.model == "llama2-70b") & d.hardware.isin(SPLITWISE_GPUS) & (d.batch_size == 1)]
    d = d.groupby(["hardware", "tensor_parallel", "prompt_size"], as_index=False).prompt_time.mean()
    return pd.DataFrame({
        "gpu": d.hardware.map(SPLITWISE_GPUS), "model": "llama-2-70b", "tp": d.tensor_parallel, "dp": 1, "batch": 1,
        "prompt_tokens": d.prompt_size, "output_tokens": 1, "scenario": "prefill", "engine": "splitwise-2023", "task": "",
        "source": "splitwise", "prefill_ms": d.prompt_time,
    })


def load_all(catalog) -> pd.DataFrame:
    """Every shared measurement in the schema (rows of models or GPUs missing from the catalog dropped)."""
    parts = [mlenergy(catalog), argonne_throughput(catalog), argonne_power(catalog), splitwise(catalog)]
    d = pd.concat(parts, ignore_index=True)
    known_gpus = []
    for g in d.gpu:
        try:
            catalog.gpu(str(g))
            known_gpus.append(True)
        except ValueError:
            known_gpus.append(False)
    return d[np.asarray(known_gpus)].reset_index(drop=True)
