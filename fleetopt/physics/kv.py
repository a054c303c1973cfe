"""Memory: weights and KV cache per GPU, the KV budget, and concurrency under admission policies."""

from __future__ import annotations

import numpy as np

from fleetopt.catalog import DTYPE_BYTES, Gpu, Model
from fleetopt.units import Num

#: vLLM's paged-attention block size, tokens (vLLM default ``--block-size 16``).
BLOCK_TOKENS = 16
#: vLLM V1 defaults for the OpenAI server on >= 70 GiB GPUs (vllm/engine/arg_utils.py).
DEFAULT_MAX_NUM_SEQS = 1024
DEFAULT_MAX_BATCHED_TOKENS = 8192
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


def weight_bytes_per_gpu(model: Model, tp: int, dp: int = 1) -> float:
    """Weight bytes each GPU holds: every parameter sharded over the TP group (vLLM shards
    attention, FFN, experts and the vocab-parallel embeddings); with ``dp`` data-parallel
    attention ranks (expert parallelism) the experts are sharded over tp x dp GPUs and the
    rest replicated per rank.  Expert and dense parts in their own dtypes.  Source:
    parameter counts from the architecture (catalog)."""
    expert_bytes = model.moe_layers * model.experts * model.expert_params * DTYPE_BYTES[model.weight_dtype]
    dense_bytes = model.non_expert_params * DTYPE_BYTES[model.dense_dtype]
    return expert_bytes / (tp * dp) + dense_bytes / tp


def kv_bytes_per_token(model: Model) -> float:
    """KV-cache bytes per token for the whole model: 2 x layers x kv_heads x head_dim x dtype
    (GQA), or layers x (kv_lora_rank + rope dim) x dtype for MLA's latent cache."""
    return model.kv_elements_per_token * DTYPE_BYTES[model.kv_dtype]


def kv_bytes_per_token_per_gpu(model: Model, tp: int) -> float:
    """KV bytes per token on one GPU.  GQA shards KV heads over min(TP, kv_heads) (beyond
    that, heads are replicated); MLA's latent is replicated on every TP rank (vLLM)."""
    if model.attention == "mla":
        return kv_bytes_per_token(model)
    return kv_bytes_per_token(model) / min(tp, model.kv_heads)


def runtime_reserve_bytes(model: Model, tp: int, max_batched_tokens: int = DEFAULT_MAX_BATCHED_TOKENS,
                          max_num_seqs: int = DEFAULT_MAX_NUM_SEQS) -> float:
    """Memory vLLM keeps out of the KV pool: non-torch allocations (CUDA context share,
    NCCL buffers, CUDA graphs, about 0.75 GiB at TP>1, 0.5 GiB at TP=1) plus the profiled
    activation peak of one max-size chunk (FFN intermediate and QKV buffers in bf16) and the
    fp32 logits of a full batch.  Source: vLLM worker memory profiling (gpu_worker.py)."""
    non_torch = (0.75 if tp > 1 else 0.5) * 2**30
    width = max(model.intermediate, model.expert_intermediate * max(model.top_k, 1)) / tp
    activation = max_batched_tokens * (2 * width + 4 * model.hidden) * 2
    logits = max_num_seqs * model.vocab * 4 / tp
    return non_torch + activation + logits


def kv_budget_bytes(model: Model, gpu: Gpu, tp: int,
                    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
                    reserve_bytes: float | None = None, dp: int = 1) -> float:
    """KV pool per GPU = gpu_memory_utilization x HBM - weights - runtime reserve (vLLM)."""
    reserve = runtime_reserve_bytes(model, tp) if reserve_bytes is None else reserve_bytes
    return gpu_memory_utilization * gpu.hbm_bytes - weight_bytes_per_gpu(model, tp, dp) - reserve


def kv_capacity_tokens(model: Model, gpu: Gpu, tp: int,
                       gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
                       reserve_bytes: float | None = None, dp: int = 1) -> int:
    """Tokens the instance's KV pool holds, in whole blocks ("GPU KV cache size" in vLLM's log);
    with ``dp`` data-parallel attention ranks each rank holds its own sequences' KV, so the
    instance holds dp x a rank's tokens."""
    budget = kv_budget_bytes(model, gpu, tp, gpu_memory_utilization, reserve_bytes, dp)
    per_block = kv_bytes_per_token_per_gpu(model, tp) * BLOCK_TOKENS
    return dp * max(0, int(budget // per_block)) * BLOCK_TOKENS


def _scalar_or_array(x: Num, kind: type = int) -> Num:
    """A 0-d result as a Python scalar, arrays unchanged (these functions take both)."""
    x = np.asarray(x)
    return kind(x) if x.ndim == 0 else x


def blocks_for_tokens(tokens: Num) -> Num:
    """Paged blocks a sequence of ``tokens`` occupies (scalar or array)."""
    return _scalar_or_array(np.maximum(1, np.ceil(np.asarray(tokens, float) / BLOCK_TOKENS)).astype(np.int64))


def concurrency_reserve(kv_tokens: int, window_tokens: Num, max_num_seqs: int | None = None) -> Num:
    """Sequences when each reserves its whole window: kv_tokens // window (vLLM's "maximum
    concurrency for max_model_len tokens per request"; the 1/W paper's n_max).  Scalar or array."""
    n = kv_tokens // (np.asarray(blocks_for_tokens(window_tokens)) * BLOCK_TOKENS)
    return _scalar_or_array(np.minimum(n, max_num_seqs) if max_num_seqs else n)


def concurrency_paged(kv_tokens: int, mean_held_tokens: Num, max_num_seqs: int = DEFAULT_MAX_NUM_SEQS) -> Num:
    """Sequences admitted by the tokens actually held (vLLM paged KV): pool blocks / mean
    blocks per sequence (mean tokens / block size + half a block of rounding), capped by
    max_num_seqs.  Scalar or array."""
    blocks = kv_tokens // BLOCK_TOKENS
    per_seq = np.asarray(mean_held_tokens, float) / BLOCK_TOKENS + 0.5
    return _scalar_or_array(np.minimum(max_num_seqs, blocks // per_seq).astype(np.int64))
