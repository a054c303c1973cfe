"""Step times from bytes and FLOPs: decode steps (with chunked prefill mixed in) and prefill.

Each step runs the linear layers (weights streamed once per step, FLOPs per token) and the
attention kernels (KV read per sequence) one after the other; each kernel family has its own
roofline.  TP adds two all-reduces per layer (latency log2(tp) rounds, bytes as a ring); the
serving stack adds per-step, per-layer and per-sequence overheads.  All coefficients come from ``Calibration``.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from fleetopt.catalog import DTYPE_BYTES, Gpu, Model
from fleetopt.physics.calibration import DEFAULT, Calibration
from fleetopt.physics.kv import kv_bytes_per_token_per_gpu
from fleetopt.units import Num


def experts_touched(experts: int, top_k: int, tokens: Num, prefill_tokens: Num = 0.0,
                    prompt_unit_tokens: Num = 0.0) -> Num:
    """Expected distinct experts a layer touches when ``tokens`` tokens each pick top_k of E
    uniformly: E (1 - q^tokens), q = 1 - k/E.  Source: occupancy of k-of-E draws per token.

    With ``prompt_unit_tokens`` U > 0, the ``prefill_tokens`` among them are the mean of whole
    prompts (or chunks) of U tokens arriving a Poisson number of times per step, rate
    lambda = prefill / U (steady serving: most steps decode only, a few carry a prompt); the
    expectation over that number is E (1 - q^(tokens - prefill) exp(lambda (q^U - 1)))
    (Poisson generating function).  Spreading the prefill evenly instead (U = 0) overstates the
    experts touched, a concave function of the tokens (Jensen)."""
    if experts == 0:
        return 0.0
    q = 1.0 - top_k / experts
    if np.ndim(prompt_unit_tokens) == 0 and prompt_unit_tokens <= 0:
        return experts * (1.0 - q ** np.maximum(tokens, 0.0))
    unit = np.asarray(prompt_unit_tokens, float)
    whole = unit > 0
    lam = np.where(whole, prefill_tokens / np.where(whole, unit, 1.0), 0.0)
    rest = np.where(whole, np.asarray(tokens, float) - prefill_tokens, tokens)
    miss = q ** np.maximum(rest, 0.0) * np.exp(lam * (q ** np.where(whole, unit, 0.0) - 1.0))
    out = experts * (1.0 - miss)
    return float(out) if np.ndim(out) == 0 else out


def weight_bytes_streamed_per_gpu(model: Model, tp: int, tokens: Num, dp: int = 1, prefill_tokens: Num = 0.0,
                                  prompt_unit_tokens: Num = 0.0) -> Num:
    """Weight bytes one GPU reads in a step that processes ``tokens`` tokens (all ranks):
    the non-expert weights (sharded over TP, replicated over DP) plus the experts the step
    touches (MoE; prefill arriving as whole prompts of ``prompt_unit_tokens``, see
    ``experts_touched``), sharded over TP x DP (expert parallel)."""
    dense = model.non_expert_params * DTYPE_BYTES[model.dense_dtype]
    emb_lookup = model.vocab * model.hidden * DTYPE_BYTES[model.dense_dtype]  # gathered rows only
    touched = experts_touched(model.experts, model.top_k, tokens, prefill_tokens, prompt_unit_tokens)
    experts = model.moe_layers * touched * model.expert_params
    return (dense - emb_lookup) / tp + experts * DTYPE_BYTES[model.weight_dtype] / (tp * dp)


def attended_tokens(model: Model, ctx_tokens: Num) -> Num:
    """Cached tokens a query attends to, averaged over the layers: the whole context on
    full-attention layers, at most the window on sliding-window layers,
    (L_full ctx + L_swa min(ctx, W)) / L.  Source: the model's config (``layer_types``)."""
    swa = model.sliding_window_layers
    if not swa or not model.sliding_window_tokens:
        return ctx_tokens
    window = np.minimum(ctx_tokens, model.sliding_window_tokens)
    return ((model.layers - swa) * ctx_tokens + swa * window) / model.layers


def attention_flops_per_pair(model: Model) -> float:
    """FLOPs per (query token, cached token) pair over all layers: QK^T and AV, 2 x 2 x heads
    x head_dim (GQA); MLA with absorbed projections scores against the latent + rope dims."""
    if model.attention == "mla":
        return model.layers * 2 * model.heads * (2 * model.kv_lora_rank + model.qk_rope_head_dim)
    return model.layers * 4 * model.heads * model.head_dim


def soft_roof_ms(a_ms: Num, b_ms: Num, p: float) -> Num:
    """Smooth max of two non-negative times, (a^p + b^p)^(1/p): kernels near the ridge point
    are slower than the hard roofline because memory and math do not overlap perfectly.
    Computed directly: for times in ms and p of a few, the powers stay far from overflow."""
    if p == 4.0:    # sqrt(sqrt()) is several times cheaper than pow
        a2, b2 = a_ms * a_ms, b_ms * b_ms
        r = np.sqrt(np.sqrt(a2 * a2 + b2 * b2))
    else:
        r = (a_ms ** p + b_ms ** p) ** (1.0 / p)
    return float(r) if np.ndim(r) == 0 else r


class StepBreakdown(msgspec.Struct, frozen=True):
    """One forward step of an instance (times in ms, per GPU; bytes and FLOPs per GPU)."""

    step_ms: Num
    linear_ms: Num
    attention_ms: Num
    comm_ms: Num
    overhead_ms: Num
    bytes_per_gpu: Num
    flops_per_gpu: Num
    compute_ms: Num
    """Tensor-core busy time at the calibrated efficiency (stretched by DVFS), ms."""
    memory_ms: Num
    """Memory busy time (weights and KV streamed at the calibrated bandwidth), ms."""

    @property
    def u_comp(self) -> Num:
        """Fraction of the step the tensor cores are busy (scalar or array)."""
        return _busy_fraction(self.compute_ms, self.step_ms)

    @property
    def u_mem(self) -> Num:
        """Fraction of the step the memory system is streaming (scalar or array)."""
        return _busy_fraction(self.memory_ms, self.step_ms)


def _busy_fraction(busy_ms: Num, step_ms: Num) -> Num:
    """min(1, busy / step), 0 for an empty step; scalar or array."""
    if np.ndim(step_ms) == 0 and np.ndim(busy_ms) == 0:
        return min(1.0, busy_ms / step_ms) if step_ms > 0 else 0.0
    step = np.asarray(step_ms, float)
    u = np.divide(busy_ms, step, out=np.zeros(np.broadcast_shapes(np.shape(busy_ms), step.shape)), where=step > 0)
    return np.minimum(u, 1.0, out=u)


class StepParts(msgspec.Struct, frozen=True):
    """The clock-independent pieces of a step (ms at full clock, per GPU; scalars or arrays):
    a DVFS search evaluates ``at(f)`` many times without recomputing bytes and FLOPs."""

    lin_mem_ms: Num
    lin_cmp_ms: Num
    att_mem_ms: Num
    att_cmp_ms: Num
    comm_ms: Num
    overhead_ms: Num
    bytes_per_gpu: Num
    flops_per_gpu: Num
    roof_p: float
    lin_flops_per_gpu: Num = 0.0
    """Linear-layer FLOPs per GPU (at the weights' dtype rate)."""
    attn_flops_per_gpu: Num = 0.0
    """Attention FLOPs per GPU (bf16 rate)."""
    link_bytes_per_gpu: Num = 0.0
    """Bytes each GPU sends over the scale-up link (all-reduce, all-to-all)."""

    def at(self, freq_scale: Num = 1.0) -> StepBreakdown:
        """The step at clock scale f: compute times stretch by 1/f, memory, links and
        host overheads do not (DVFS lowers the SM clock only)."""
        lin_c, att_c = self.lin_cmp_ms / freq_scale, self.att_cmp_ms / freq_scale
        linear_ms = soft_roof_ms(self.lin_mem_ms, lin_c, self.roof_p)
        attention_ms = soft_roof_ms(self.att_mem_ms, att_c, self.roof_p)
        step = linear_ms + attention_ms + self.comm_ms + self.overhead_ms
        return StepBreakdown(step, linear_ms, attention_ms, self.comm_ms, self.overhead_ms, self.bytes_per_gpu,
                             self.flops_per_gpu, lin_c + att_c, self.lin_mem_ms + self.att_mem_ms)

    def dstep_df(self, br: StepBreakdown, freq_scale: Num = 1.0) -> Num:
        """d step_ms / d f at ``br`` (= ``self.at(freq_scale)``): each soft roof
        R = (m^p + (c/f)^p)^(1/p) has dR/df = -(c/f)^p R^(1-p) / f (chain rule)."""
        p = self.roof_p
        out: Num = 0.0
        for c, r in ((self.lin_cmp_ms, br.linear_ms), (self.att_cmp_ms, br.attention_ms)):
            r = np.asarray(r, float)
            safe = np.where(r > 0, r, 1.0)
            cf = c / freq_scale
            if p == 4.0:    # without pow: (c/f)^4 r^-3
                q = cf / safe
                term = q * q * q * cf
            else:
                term = cf ** p * safe ** (1.0 - p)
            out = out - np.where(r > 0, term, 0.0) / freq_scale
        return out


def step_parts(model: Model, gpu: Gpu, tp: int, batch: Num, mean_kv_tokens: Num,
               prefill_tokens: Num = 0.0, prefill_ctx_tokens: Num = 0.0,
               cal: Calibration = DEFAULT, eta_flops: float | None = None, dp: int = 1,
               prompt_unit_tokens: Num = 0.0) -> StepParts:
    """The pieces of ``step_breakdown`` that do not depend on the clock (arguments as there;
    ``prompt_unit_tokens`` > 0: the prefill tokens are the mean of whole prompts or chunks of
    that size, as in steady serving, which matters for the experts an MoE step touches)."""
    eng = cal.engine
    eta = (cal.eta_flops if eta_flops is None else eta_flops) * eng.flops_scale
    tokens = batch + prefill_tokens
    batch_r, tokens_r = batch / dp, tokens / dp
    bw = gpu.mem_bw_bytes_s * cal.eta_bw
    flops_lin = gpu.flops_for(model.weight_dtype) * eta
    flops_attn = gpu.bf16_flops * eta
    w_bytes = (weight_bytes_streamed_per_gpu(model, tp, tokens, dp, prefill_tokens, prompt_unit_tokens)
               * (np.asarray(tokens) > 0))
    read_kv = attended_tokens(model, mean_kv_tokens)              # sliding-window layers read at most W
    kv_bytes = batch_r * read_kv * kv_bytes_per_token_per_gpu(model, tp)
    lin_flops = 2.0 * model.active_params * tokens_r / tp            # 2 FLOPs per MAC
    pairs = batch_r * read_kv + prefill_tokens / dp * attended_tokens(model, prefill_ctx_tokens)  # (query, key) pairs
    attn_flops = attention_flops_per_pair(model) * pairs / tp
    comm_ms: Num = 0.0
    link_bytes: Num = 0.0
    if tp > 1:   # all-reduce of bf16 activations, twice per layer: each GPU sends 2 (tp-1)/tp of the tensor
        # (ring bandwidth term) after log2(tp) latency rounds (recursive doubling's latency term)
        ar_bytes = 2.0 * (tp - 1) / tp * tokens * model.hidden * 2.0
        comm_ms = 2 * model.layers * (eng.allreduce_us * math.log2(tp) * 1e-3 + ar_bytes / (gpu.link_gb_s * 1e9) * 1e3)
        link_bytes = 2 * model.layers * ar_bytes
    if dp > 1:   # expert-parallel dispatch and combine: top_k copies of each token's hidden state
        a2a_bytes = (dp - 1) / dp * tokens_r * model.top_k * model.hidden * 2.0
        comm_ms = comm_ms + 2 * model.moe_layers * (eng.alltoall_us * 1e-3 + a2a_bytes / (gpu.link_gb_s * 1e9) * 1e3)
        link_bytes = link_bytes + 2 * model.moe_layers * a2a_bytes
    overhead_ms = (eng.step_fixed_ms + (model.layers * eng.layer_us + model.moe_layers * eng.moe_layer_us) * 1e-3
                   + batch_r * eng.seq_us * 1e-3)
    return StepParts(w_bytes / bw * 1e3, lin_flops / flops_lin * 1e3, kv_bytes / bw * 1e3,
                     attn_flops / flops_attn * 1e3,
                     comm_ms, overhead_ms, w_bytes + kv_bytes, lin_flops + attn_flops, cal.roof_p,
                     lin_flops, attn_flops, link_bytes)


def step_breakdown(model: Model, gpu: Gpu, tp: int, batch: Num, mean_kv_tokens: Num,
                   prefill_tokens: Num = 0.0, prefill_ctx_tokens: Num = 0.0,
                   cal: Calibration = DEFAULT, freq_scale: Num = 1.0,
                   eta_flops: float | None = None, dp: int = 1) -> StepBreakdown:
    """A step decoding ``batch`` sequences of mean cached length ``mean_kv_tokens`` while
    prefilling ``prefill_tokens`` prompt tokens whose mean attended context is
    ``prefill_ctx_tokens``.  ``freq_scale`` < 1 stretches compute (DVFS power cap).
    ``dp`` > 1 is data-parallel attention with experts sharded over dp x tp GPUs (vLLM's
    DP + expert parallel): each rank holds batch/dp sequences and a full copy of the
    non-expert weights, and every layer exchanges tokens with two all-to-alls."""
    return step_parts(model, gpu, tp, batch, mean_kv_tokens, prefill_tokens, prefill_ctx_tokens, cal,
                      eta_flops, dp).at(freq_scale)


def decode_step_ms(model: Model, gpu: Gpu, tp: int, batch: Num, mean_kv_tokens: Num,
                   cal: Calibration = DEFAULT) -> Num:
    """Time of one pure decode step (no prefill mixed in), ms."""
    return step_breakdown(model, gpu, tp, batch, mean_kv_tokens, cal=cal).step_ms


def prefill_ms(model: Model, gpu: Gpu, tp: int, prompt_tokens: Num, chunk_tokens: int = 8192,
               cal: Calibration = DEFAULT, decode_batch: Num = 0.0, decode_kv_tokens: Num = 0.0,
               freq_scale: Num = 1.0) -> Num:
    """Time to prefill one prompt in chunks of ``chunk_tokens`` (linear FLOPs per token,
    attention FLOPs growing with the context already cached: the quadratic term), optionally
    sharing each step with a running decode batch.  ms."""
    p = np.asarray(prompt_tokens, dtype=float)
    total = np.zeros_like(p)
    n_chunks = max(1, math.ceil(float(np.max(p)) / chunk_tokens))
    for k in range(n_chunks):     # chunk k of every prompt at once (numpy); absent chunks add 0
        done = k * chunk_tokens
        c = np.clip(p - done, 0.0, chunk_tokens)
        st = step_breakdown(model, gpu, tp, decode_batch, decode_kv_tokens, c, done + c / 2.0,
                            cal, freq_scale, eta_flops=cal.eta_prefill).step_ms
        total = total + np.where(c > 0, st, 0.0)
    return float(total) if total.ndim == 0 else total

