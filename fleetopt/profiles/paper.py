"""The published 1/W model ("paper" mode), restated from ../shared/reference/one-over-w-model.md.

Two profiles, both with the ``Profile`` protocol (``fleetopt.profiles.base``):

* ``ManualProfile`` (Tables 1, 3, 4): iter(n, Lbar) = W + H (Lbar / L_cal) n, n_slots from
  a fixed KV block count, the logistic per-GPU power P(b).  Exists for Llama-3.1-70B TP 8 on
  H100 and (projected) B200, as in the paper.
* ``ComputedProfile`` (Tables 2, 5): the paper's first-principles roofline, with its
  conventions kept on purpose (whole per-token KV charged to one GPU, 0.43/0.43 TDP power).

The published simulator's routing quirks are the mode's too (``fleetopt.profiles.paper_routing``).

Their flaws are reproduced deliberately; ``physical`` mode repairs them (README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetopt.catalog import DTYPE_BYTES, Gpu, Model
from fleetopt.errors import FleetoptError
from fleetopt.physics.energy import energy_per_token_j
from fleetopt.profiles.point import Admission, Num, OperatingPoint


class _PaperPoints:
    """What both published profiles share: no chunked prefill, no calibration, one GPU
    type per instance, law rows and single points under the paper's conventions."""

    tp: int
    gpu: Gpu

    @property
    def dp(self) -> int:
        """No data-parallel attention in the published model."""
        return 1

    def uncapped(self) -> _PaperPoints:
        """The published profiles have no power cap."""
        return self

    @property
    def gpus_per_instance(self) -> int:
        """GPUs of one instance: tp."""
        return self.tp

    @property
    def chunked_prefill(self) -> bool:
        """The published steps hold no prefill: a request's service time is ``service_ms``."""
        return False

    @property
    def calibration_label(self) -> str:
        """The published model has no calibration."""
        return "-"

    def usd_per_instance_hour(self, usd_per_gpu_hour: float | None = None) -> float:
        """tp x the GPU's hourly price (the catalog's unless given), USD."""
        price = self.gpu.usd_per_gpu_hour if usd_per_gpu_hour is None else usd_per_gpu_hour
        return float(price) * self.tp

    def concurrency(self, window_tokens: Num, mean_held_tokens: Num = 0.0, admission: Admission = "reserve") -> Num:
        """n_max of the published model (each profile's own formula)."""
        raise NotImplementedError

    def operating_point(self, batch: Num, mean_kv_tokens: Num, prefill_tokens_per_step: Num = 0.0,
                        prefill_ctx_tokens: Num = 0.0, decode: bool = True,
                        whole_prompts: bool = False) -> OperatingPoint:
        """The published iteration and power model (each profile's own)."""
        raise NotImplementedError

    def prefill_ms(self, prompt_tokens: Num) -> Num:
        """The published prefill time (each profile's own)."""
        raise NotImplementedError

    def kv_concurrency(self, window_tokens: Num, mean_held_tokens: Num = 0.0, admission: Admission = "reserve") -> Num:
        """The published model's n_max is KV-limited already (no max_num_seqs cap)."""
        return self.concurrency(window_tokens, mean_held_tokens, admission)

    def saturation(self, window_tokens: int, output_tokens: int = 0,
                   admission: Admission = "reserve") -> tuple[int, OperatingPoint | None]:
        """n_max at the paper's mean in-flight length window/2, decode only."""
        n = int(self.concurrency(window_tokens, window_tokens / 2.0, admission))
        return n, (self.operating_point(n, window_tokens / 2.0) if n > 0 else None)

    def query_point(self, batch: int, prompt_tokens: int, output_tokens: int) -> tuple[OperatingPoint, float]:
        """Decode at mean length P + O; the paper's steps hold no prefill, so the prefill
        energy is charged per query on top (as a meter would see it):

            E_tok = P_inst / tok_s + P_inst x prefill(P) / O / batch"""
        op = self.operating_point(batch, prompt_tokens + output_tokens)
        e_tok = (energy_per_token_j(op.instance_power_w, op.decode_tokens_per_s)
                 + op.instance_power_w * self.prefill_ms(prompt_tokens) / 1e3 / output_tokens / batch)
        return op, float(e_tok)


@dataclass(frozen=True)
class SigmoidPower:
    """P(b) = (P_nom - P_idle) / (1 + exp(-k (log2 b - x0))) + P_idle, b floored to an
    integer >= 1 (the paper's per-GPU power, section 1 of the note)."""

    idle_w: float
    nom_w: float
    k: float
    x0: float

    def __call__(self, batch: Num) -> Num:
        """P(b) per GPU, W."""
        b = np.maximum(1.0, np.floor(batch))
        p = (self.nom_w - self.idle_w) / (1.0 + np.exp(-self.k * (np.log2(b) - self.x0))) + self.idle_w
        return float(p) if np.ndim(p) == 0 else p


#: Per-GPU power curves of the paper (note section 1).
PAPER_POWER = {
    "h100-sxm": SigmoidPower(300.0, 600.0, 1.0, 4.2),
    "b200": SigmoidPower(430.0, 860.0, 1.0, 4.46),
    "b200-measured-b1": SigmoidPower(251.33, 606.33, 1.0, -1.03),
    "a100-sxm-80gb": SigmoidPower(175.0, 385.0, 1.0, 2.5),
}


@dataclass(frozen=True)
class ManualParams:
    """One ManualProfile row of the note's section 2 table."""

    w_ms: float
    h_ms: float
    l_cal: int
    chunk: int
    blk: int
    total_kv_blocks: int
    max_slots: int
    usd_per_hour: float


MANUAL = {
    ("llama-3.1-70b", "h100-sxm", 8): ManualParams(4.0, 0.32, 8192, 1024, 16, 65536, 256, 32.16),
    ("llama-3.1-70b", "b200", 8): ManualParams(2.955, 0.134, 8192, 2048, 16, 171936, 671, 64.0),
}


@dataclass(frozen=True)
class ManualProfile(_PaperPoints):
    """The paper's ManualProfile: fixed W/H iteration model and KV block count."""

    model: Model
    gpu: Gpu
    tp: int
    p: ManualParams
    power: SigmoidPower
    mode: str = field(default="paper")

    def iter_ms(self, n: Num, mean_len_tokens: Num) -> Num:
        """iter(n, Lbar) = W + H (Lbar / L_cal) n."""
        return self.p.w_ms + self.p.h_ms * (mean_len_tokens / self.p.l_cal) * n

    def n_slots(self, ctx_tokens: Num) -> Num:
        """min(max_slots x L_cal // ctx, total_kv_blocks // ceil(ctx / blk)); scalar or array."""
        ctx = np.asarray(ctx_tokens, np.int64)
        n = np.minimum(self.p.max_slots * self.p.l_cal // ctx,
                       self.p.total_kv_blocks // np.ceil(ctx / self.p.blk).astype(np.int64))
        return int(n) if n.ndim == 0 else n

    def kv_capacity_tokens(self) -> int:
        """total_kv_blocks x blk tokens."""
        return self.p.total_kv_blocks * self.p.blk

    def concurrency(self, window_tokens: Num, mean_held_tokens: Num = 0.0, admission: Admission = "reserve") -> Num:
        """``n_slots(window)``: the paper has only full-window reservation."""
        return self.n_slots(window_tokens)

    def operating_point(self, batch: Num, mean_kv_tokens: Num, prefill_tokens_per_step: Num = 0.0,
                        prefill_ctx_tokens: Num = 0.0, decode: bool = True,
                        whole_prompts: bool = False) -> OperatingPoint:
        """iter(batch, Lbar) as the step, P(batch) per GPU, tokens/s = batch / iter x 1000;
        prefill is not in the step."""
        it = self.iter_ms(batch, mean_kv_tokens)
        pw = self.power(batch)
        tok_s = batch / it * 1e3
        return OperatingPoint(batch, it, it, 0.0, tok_s, pw, self.tp * pw, self.tp)

    def prefill_ms(self, prompt_tokens: Num) -> Num:
        """ceil(l_in / chunk) x iter(1) at the prompt length (the paper's mean prefill)."""
        return np.ceil(np.asarray(prompt_tokens, float) / self.p.chunk) * self.iter_ms(1, prompt_tokens)

    def service_ms(self, prompt_tokens: Num, output_tokens: Num, batch: Num) -> Num:
        """(ceil(l_in / chunk) + l_out) x iter(n_slots, l_in + l_out)."""
        p = np.asarray(prompt_tokens, float)
        return (np.ceil(p / self.p.chunk) + output_tokens) * self.iter_ms(batch, p + output_tokens)

    def idle_power_w(self) -> float:
        """P(1): the logistic curve at one sequence, W."""
        return float(self.power(1))

    def usd_per_instance_hour(self, usd_per_gpu_hour: float | None = None) -> float:
        """The published price of the instance (the note's table), whatever the GPU's price."""
        return self.p.usd_per_hour


#: NCCL workspace the ComputedProfile subtracts per GPU at TP 8 (note: "about 392 MiB").
NCCL_BYTES = 392 * 2**20
PAPER_HBM_BYTES = {"a100-sxm-80gb": 80 * 2**30, "h100-sxm": 80 * 2**30, "h200": 141 * 2**30,
                   "b200": 180 * 2**30, "gb200": 200 * 2**30, "l40s": 48 * 2**30}


@dataclass(frozen=True)
class ComputedProfile(_PaperPoints):
    """The paper's ComputedProfile roofline (Table 2), conventions kept as published:
    W = params x bytes / TP / (0.8 bw) + 3 us x layers; H = Lbar x full KV/token / (0.8 bw) / TP;
    KV budget = 0.9 HBM - weights/GPU - NCCL, whole per-token KV charged to one GPU;
    P = TDP (0.43 + 0.43 min(1, kv_frac + compute_frac)).
    ``w_power_ms`` overrides W inside the power model only (the paper's MoE inconsistency)."""

    model: Model
    gpu: Gpu
    tp: int
    params: float
    w_ms: float
    kv_bytes_token: float
    w_power_ms: float | None = None
    mode: str = field(default="paper-computed")

    def h_ms(self, mean_len_tokens: Num) -> Num:
        """H = Lbar x KV bytes per token / (0.8 x bandwidth) / TP, ms per sequence."""
        return mean_len_tokens * self.kv_bytes_token / (0.8 * self.gpu.mem_bw_bytes_s) / self.tp * 1e3

    def kv_capacity_tokens(self) -> int:
        """(0.9 HBM - weights / TP - NCCL) // (KV bytes per token x 16) blocks x 16 tokens."""
        hbm = PAPER_HBM_BYTES.get(self.gpu.id, self.gpu.hbm_bytes)
        wbytes = self.params * DTYPE_BYTES[self.model.weight_dtype] / self.tp
        blocks = int((0.9 * hbm - wbytes - NCCL_BYTES) // (self.kv_bytes_token * 16))
        return max(blocks, 0) * 16

    def concurrency(self, window_tokens: Num, mean_held_tokens: Num = 0.0, admission: Admission = "reserve") -> Num:
        """kv_capacity_tokens // window (full-window reservation)."""
        n = self.kv_capacity_tokens() // np.asarray(window_tokens, np.int64)
        return int(n) if n.ndim == 0 else n

    def power_w(self, batch: Num, mean_len_tokens: Num) -> Num:
        """P = TDP (0.43 + 0.43 min(1, kv_frac + compute_frac)) per GPU, W."""
        w = self.w_power_ms if self.w_power_ms is not None else self.w_ms
        nh = batch * self.h_ms(mean_len_tokens)
        it = w + nh
        kv_frac = nh / it
        compute_frac = 2 * self.params / self.tp * batch / (it * 1e-3 * self.gpu.bf16_flops)
        p = self.gpu.tdp_w * (0.43 + 0.43 * np.minimum(1.0, kv_frac + compute_frac))
        return float(p) if np.ndim(p) == 0 else p

    def operating_point(self, batch: Num, mean_kv_tokens: Num, prefill_tokens_per_step: Num = 0.0,
                        prefill_ctx_tokens: Num = 0.0, decode: bool = True,
                        whole_prompts: bool = False) -> OperatingPoint:
        """iter = W + batch x H(Lbar), P from ``power_w``; prefill is not in the step."""
        it = self.w_ms + batch * self.h_ms(mean_kv_tokens)
        pw = self.power_w(batch, mean_kv_tokens)
        return OperatingPoint(batch, it, it, 0.0, batch / it * 1e3, pw, self.tp * pw, self.tp)

    def prefill_ms(self, prompt_tokens: Num) -> Num:
        """2 x params x prompt / TP / bf16 FLOP/s, ms (compute-bound prefill)."""
        return 2 * self.params * prompt_tokens / self.tp / self.gpu.bf16_flops * 1e3

    def service_ms(self, prompt_tokens: Num, output_tokens: Num, batch: Num) -> Num:
        """prefill + l_out x (W + batch x H(l_in + l_out)), ms."""
        it = self.w_ms + batch * self.h_ms(prompt_tokens + output_tokens)
        return self.prefill_ms(prompt_tokens) + output_tokens * it

    def idle_power_w(self) -> float:
        """0.43 x TDP: the power model's floor, W."""
        return 0.43 * self.gpu.tdp_w


def computed_profile(model: Model, gpu: Gpu, tp: int, *, params: float | None = None,
                     w_power_ms: float | None = None, head_dim: int | None = None,
                     moe_active_streaming: bool = True) -> ComputedProfile:
    """Build the paper's ComputedProfile.  Dense models stream all parameters; MoE models
    stream only the active ones in the throughput W without the 0.8 factor or layer overhead
    (as the note's Qwen3 row: 22e9 x 2 / 8 / 3.35 TB/s = 1.642 ms)."""
    bpp = DTYPE_BYTES[model.weight_dtype]
    hd = head_dim or model.head_dim
    kv_tok = 2 * model.layers * model.kv_heads * hd * DTYPE_BYTES[model.kv_dtype]
    if model.is_moe and moe_active_streaming:
        p = params or model.active_params
        w = p * bpp / tp / gpu.mem_bw_bytes_s * 1e3
    else:
        p = params or model.active_params
        w = p * bpp / tp / (0.8 * gpu.mem_bw_bytes_s) * 1e3 + 3e-3 * model.layers
    return ComputedProfile(model, gpu, tp, p, w, kv_tok, w_power_ms)


def paper_profile(model: Model, gpu: Gpu, tp: int, computed: bool = False) -> ManualProfile | ComputedProfile:
    """ManualProfile where the paper has one (Llama-3.1-70B TP 8 on H100 or B200), else the
    ComputedProfile; ``computed`` forces the latter (Table 2)."""
    key = (model.id, gpu.id, tp)
    if not computed and key in MANUAL:
        return ManualProfile(model, gpu, tp, MANUAL[key], PAPER_POWER[gpu.id])
    if model.attention == "gqa" and model.heads % tp:
        raise FleetoptError(f"tp {tp} does not divide {model.id}'s {model.heads} attention heads")
    prof = computed_profile(model, gpu, tp)
    if prof.kv_capacity_tokens() <= 0:
        raise FleetoptError(f"{model.id} does not fit on {tp} x {gpu.id} under the paper's memory model")
    return prof


def build(model: Model, gpu: Gpu, tp: int, knobs: dict[str, Any]) -> ManualProfile | ComputedProfile:
    """The registry's builder of mode ``paper``: ``paper_profile`` (the published model has
    no serving knobs; ``knobs`` is ignored)."""
    return paper_profile(model, gpu, tp)


def build_computed(model: Model, gpu: Gpu, tp: int, knobs: dict[str, Any]) -> ComputedProfile:
    """The registry's builder of mode ``paper-computed``: the ComputedProfile everywhere (Table 2)."""
    prof = paper_profile(model, gpu, tp, computed=True)
    assert isinstance(prof, ComputedProfile)
    return prof
