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
#: The same defaults on smaller GPUs and on every A100 (vllm/engine/arg_utils.py get_batch_defaults:
#: ``device_memory >= 70 GiB and "a100" not in device_name`` picks the larger pair).
SMALL_GPU_MAX_NUM_SEQS = 256
SMALL_GPU_MAX_BATCHED_TOKENS = 2048
#: fp32 vocab-wide buffers alive at the peak of vLLM's sampler warm-up (profile_run's
#: _dummy_sampler_run over max_num_seqs dummy requests: bf16 and fp32 logits, the top-k/top-p
#: sort's fp32 values and int64 indices, softmax, masks, probabilities, exponential noise).
#: Least squares on the held-in half of benchmarks/kv_concurrency.py gives 9.7 (it prints the fit); single logs'
#: peak activation / (seqs x vocab x 4 B) are 9.6-9.9 on H100, H200 and L40S (vLLM 0.10-0.11)
#: and 11.8 on an A100 80GB (vLLM 0.31).
SAMPLER_FP32_COPIES = 9.7


#: Bytes ROCm vLLM appends to each row of an unquantised MoE weight whose row is a multiple of
#: 512 bytes (``VLLM_ROCM_MOE_PADDING``, on by default: F.pad(w, (0, 256 // element size))
#: then sliced back, so the storage keeps the pad; vllm/envs.py and the unquantised fused-MoE
#: method; quantised MoE methods do not pad).
ROCM_MOE_ROW_PAD_BYTES = 256


def rocm_moe_padding_bytes(model: Model, tp: int, dp: int = 1) -> float:
    """Bytes per GPU ROCm vLLM's MoE row padding adds (``ROCM_MOE_ROW_PAD_BYTES`` per row of
    16-bit expert weights whose row is a multiple of 512 B): per MoE layer and expert,
    gate/up [2 I, H] has 2 I rows of H, down [H, I] has H rows of I; without expert
    parallelism (dp = 1) TP shards I, with it (dp > 1) whole experts spread over tp x dp."""
    width = DTYPE_BYTES[model.weight_dtype]
    if model.experts == 0 or width != 2:
        return 0.0
    ep = dp > 1
    inter = model.expert_intermediate if ep else model.expert_intermediate / tp
    experts = model.experts / (tp * dp) if ep else model.experts

    def pad(rows: float, row_elems: float) -> float:
        return rows * ROCM_MOE_ROW_PAD_BYTES if (row_elems * width) % 512 == 0 else 0.0
    per_expert = pad(2 * inter, model.hidden) + pad(model.hidden, inter)
    return model.moe_layers * experts * per_expert


def weight_bytes_per_gpu(model: Model, tp: int, dp: int = 1, gpu: Gpu | None = None) -> float:
    """Weight bytes each GPU holds: every parameter sharded over the TP group (vLLM shards
    attention, FFN, experts and the vocab-parallel embeddings); with ``dp`` data-parallel
    attention ranks (expert parallelism) the experts are sharded over tp x dp GPUs and the
    rest replicated per rank.  Expert and dense parts in their own dtypes, embeddings in bf16;
    what vLLM replicates on every rank (MoE routers, MLA down-projections) counted whole; on an
    AMD ``gpu``, ROCm vLLM's MoE row padding (``rocm_moe_padding_bytes``).
    Source: parameter counts from the architecture (catalog); vLLM model code as noted."""
    dense = DTYPE_BYTES[model.dense_dtype]
    expert_bytes = model.moe_layers * model.experts * model.expert_params * DTYPE_BYTES[model.weight_dtype]
    # MoE routers: ReplicatedLinear(hidden, experts, quant_config=None), bf16 on every rank (vLLM qwen3_moe.py)
    router = model.moe_layers * model.hidden * model.experts
    # MLA down-projections q_a_proj and kv_a_proj_with_mqa: ReplicatedLinear on every rank (vLLM deepseek_v2.py)
    mla_down = (model.layers * model.hidden * (model.q_lora_rank + model.kv_lora_rank + model.qk_rope_head_dim)
                if model.attention == "mla" else 0)
    # quantised MLA: process_weights_after_loading keeps a bf16 dequantised kv_b_proj (W_UK, W_UV) per rank
    kv_b = (model.layers * model.kv_lora_rank * model.heads * 2 * model.head_dim
            if model.attention == "mla" and dense < DTYPE_BYTES["bf16"] else 0)
    # quantised releases (FP8, MXFP4) keep the embeddings and the LM head in bf16 (their
    # config.json quantization_config leaves embed_tokens / lm_head unquantised)
    embedding = model.embedding_params
    sharded = (model.non_expert_params - embedding - router - mla_down) * dense
    bf16 = DTYPE_BYTES["bf16"]
    rocm_pad = rocm_moe_padding_bytes(model, tp, dp) if gpu is not None and gpu.vendor == "amd" else 0.0
    return (expert_bytes / (tp * dp) + (sharded + (embedding + kv_b) * bf16) / tp
            + router * bf16 + mla_down * dense + rocm_pad)


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


def default_max_num_seqs(gpu: Gpu | None = None) -> int:
    """vLLM's default max_num_seqs on ``gpu``: 1024 on >= 70 GiB GPUs other than A100s (H100,
    H200, B200, MI300X), else 256 (vllm/engine/arg_utils.py get_batch_defaults); None = 1024."""
    return DEFAULT_MAX_NUM_SEQS if gpu is None or _big_gpu(gpu) else SMALL_GPU_MAX_NUM_SEQS


def default_max_batched_tokens(gpu: Gpu | None = None) -> int:
    """vLLM's OpenAI-server default max_num_batched_tokens on ``gpu``: 8192 on >= 70 GiB GPUs
    other than A100s, else 2048 (vllm/engine/arg_utils.py get_batch_defaults); None = 8192."""
    return DEFAULT_MAX_BATCHED_TOKENS if gpu is None or _big_gpu(gpu) else SMALL_GPU_MAX_BATCHED_TOKENS


def _big_gpu(gpu: Gpu) -> bool:
    return gpu.hbm_bytes >= 70 * 2**30 and "a100" not in f"{gpu.id} {gpu.name}".lower()


def runtime_reserve_bytes(model: Model, tp: int, max_batched_tokens: int | None = None,
                          max_num_seqs: int | None = None, gpu: Gpu | None = None) -> float:
    """Memory vLLM (V1) keeps out of the KV pool on each GPU: the non-torch memory its
    profiling finds plus the torch peak of ``profile_run`` above the weights, which is the
    larger of one max-size chunk's forward pass and the sampler's warm-up over max_num_seqs
    dummy requests (every TP rank samples from the full gathered vocabulary).  Unset
    ``max_batched_tokens`` / ``max_num_seqs`` take vLLM's defaults for ``gpu``.
    Source: vLLM gpu_worker.py determine_available_memory (KV = gmu x total - weights - peak
    activation - non-torch) and gpu_model_runner.py profile_run; checked against the public
    logs in benchmarks/kv_concurrency.py."""
    tokens = max_batched_tokens or default_max_batched_tokens(gpu)
    seqs = max_num_seqs or default_max_num_seqs(gpu)
    # cuBLAS workspaces and allocator slack (logged 0.07-0.26 GiB at TP 1); NCCL and
    # custom all-reduce buffers at TP > 1 (logged 0.2-1.7 GiB)
    non_torch = (0.75 if tp > 1 else 0.15) * 2**30
    # one chunk's FFN intermediate (gate/up and activation) and QKV/residual buffers in bf16
    width = max(model.intermediate, model.expert_intermediate * max(model.top_k, 1)) / tp
    forward = tokens * (2 * width + 4 * model.hidden) * 2
    # the sampler's fp32 buffers over seqs x vocab logits (SAMPLER_FP32_COPIES)
    sampler = seqs * model.vocab * 4 * SAMPLER_FP32_COPIES
    return non_torch + max(forward, sampler)


def kv_budget_bytes(model: Model, gpu: Gpu, tp: int,
                    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
                    reserve_bytes: float | None = None, dp: int = 1) -> float:
    """KV pool per GPU = gpu_memory_utilization x HBM - weights - runtime reserve (vLLM)."""
    reserve = runtime_reserve_bytes(model, tp, gpu=gpu) if reserve_bytes is None else reserve_bytes
    return gpu_memory_utilization * gpu.hbm_bytes - weight_bytes_per_gpu(model, tp, dp, gpu) - reserve


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


def full_attention_fraction(model: Model) -> float:
    """Share of the KV bytes per token in layers that cache the whole context: 1 - sliding
    layers / layers (1 without sliding windows).  Source: the model's ``layer_types``."""
    if not model.sliding_window_layers or not model.sliding_window_tokens:
        return 1.0
    return 1.0 - model.sliding_window_layers / model.layers


def sliding_span_blocks(model: Model, max_batched_tokens: int | None = None) -> int:
    """Blocks a sliding-window layer keeps for one sequence (vLLM V1's hybrid allocator frees
    the blocks behind the window): running, ceil(W / 16) + 1 (the window straddles a block
    boundary); the worst case vLLM reserves when it logs its maximum concurrency, a chunk of
    ``max_batched_tokens`` on top of the window, ceil((W - 1 + chunk) / 16) + 1
    (vllm/v1/kv_cache_interface.py, SlidingWindowSpec.max_memory_usage_bytes).  0 without."""
    w = model.sliding_window_tokens if model.sliding_window_layers else 0
    if not w:
        return 0
    tokens = w if max_batched_tokens is None else w - 1 + max_batched_tokens
    return -(-tokens // BLOCK_TOKENS) + 1


def paged_limits(model: Model, kv_tokens: float) -> tuple[float, float]:
    """The paged KV capacity in tokens held by every layer, and what each running sequence holds
    beyond its tokens, in the same units: with sliding windows (a share 1 - f of the bytes per
    token) a sequence of L tokens costs f L + (1 - f) x its window span of the pool's
    ``kv_tokens`` (all-layer units), so the capacity is kv / f tokens less (1 - f) / f x span
    per sequence (span = ``sliding_span_blocks`` x 16; taken whole: prompts outrun a
    128-token window).  (kv, 0) without sliding windows."""
    f = full_attention_fraction(model)
    if f >= 1.0:
        return kv_tokens, 0.0
    return kv_tokens / f, (1.0 - f) / f * sliding_span_blocks(model) * BLOCK_TOKENS


def concurrency_reserve(kv_tokens: int, window_tokens: Num, max_num_seqs: int | None = None,
                        full_fraction: float = 1.0, span_blocks: int = 0) -> Num:
    """Sequences when each reserves its whole window: kv_tokens // window (vLLM's "maximum
    concurrency for max_model_len tokens per request"; the 1/W paper's n_max).  With sliding
    windows (``full_fraction`` f < 1) a sequence costs f x its window's blocks + (1 - f) x
    min(its blocks, ``span_blocks``), in blocks of every layer's bytes.  Scalar or array."""
    blocks = np.asarray(blocks_for_tokens(window_tokens), float)
    per_seq = full_fraction * blocks + (1.0 - full_fraction) * np.minimum(blocks, span_blocks)
    n = np.floor(kv_tokens / (per_seq * BLOCK_TOKENS) + 1e-9).astype(np.int64)
    return _scalar_or_array(np.minimum(n, max_num_seqs) if max_num_seqs else n)


def concurrency_paged(kv_tokens: int, mean_held_tokens: Num, max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
                      full_fraction: float = 1.0, span_blocks: int = 0) -> Num:
    """Sequences admitted by the tokens actually held (vLLM paged KV): pool blocks / mean
    blocks per sequence (mean tokens / block size + half a block of rounding; sliding-window
    layers at most ``span_blocks``, weighted as in ``concurrency_reserve``), capped by
    max_num_seqs.  Scalar or array."""
    blocks = kv_tokens // BLOCK_TOKENS
    held = np.asarray(mean_held_tokens, float) / BLOCK_TOKENS + 0.5
    per_seq = full_fraction * held + (1.0 - full_fraction) * np.minimum(held, span_blocks)
    return _scalar_or_array(np.minimum(max_num_seqs, blocks // per_seq).astype(np.int64))
