"""Physical mode: every figure of an instance from bytes, FLOPs and the catalog's spec sheets.

``PhysicalProfile`` composes the pure physics (``fleetopt.physics``): the KV cache from the
memory left after weights (``kv``), step times from a roofline over the bytes and FLOPs of a
step (``roofline``), per-GPU power from energy per operation (``power``), all scaled by the
active ``Calibration``.  Over a power cap (TDP or the user's), DVFS lowers the clock until
the power meets it.  Built through the registry (``fleetopt.profiles.make_profile``), which
first checks that the model fits (``check_fits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fleetopt.catalog import Gpu, Model
from fleetopt.errors import FleetoptError
from fleetopt.physics import kv as kvm
from fleetopt.physics.calibration import DEFAULT, Calibration, active_calibration, active_label
from fleetopt.physics.energy import energy_per_token_j
from fleetopt.physics.power import StepEnergy, gpu_power_dfreq_w, gpu_power_w, step_energy
from fleetopt.physics.roofline import StepBreakdown, StepParts, prefill_ms, step_parts
from fleetopt.profiles.point import Admission, Num, OperatingPoint


@dataclass(frozen=True)
class PhysicalProfile:
    """Physical mode: memory, roofline and power from the catalog and ``Calibration``."""

    model: Model
    gpu: Gpu
    tp: int
    cal: Calibration = DEFAULT
    gpu_memory_utilization: float = kvm.DEFAULT_GPU_MEMORY_UTILIZATION
    max_num_seqs: int = kvm.DEFAULT_MAX_NUM_SEQS
    chunk_tokens: int = kvm.DEFAULT_MAX_BATCHED_TOKENS
    power_cap_w: float | None = None
    """Per-GPU power cap (nvidia-smi -pl); None = TDP."""
    dp: int = 1
    """Data-parallel attention ranks with expert parallelism (MoE); the instance has tp x dp GPUs."""
    mode: str = field(default="physical")
    """The registry's name (a label: nothing branches on it)."""

    @property
    def gpus_per_instance(self) -> int:
        """GPUs of one instance: tp x dp."""
        return self.tp * self.dp

    @property
    def chunked_prefill(self) -> bool:
        """Prompts are prefilled in chunks inside the decode steps (vLLM's chunked prefill)."""
        return True

    @property
    def calibration_label(self) -> str:
        """The calibration in use (``fleetopt.physics.calibration.active_label``)."""
        return active_label()

    def usd_per_instance_hour(self, usd_per_gpu_hour: float | None = None) -> float:
        """GPUs per instance x the GPU's hourly price (the catalog's unless given), USD."""
        price = self.gpu.usd_per_gpu_hour if usd_per_gpu_hour is None else usd_per_gpu_hour
        return float(price) * self.gpus_per_instance

    def kv_capacity_tokens(self) -> int:
        """Tokens the KV pool holds: (gmu x HBM - weights - runtime reserve) / KV bytes per
        token, in whole blocks, x dp (``fleetopt.physics.kv.kv_capacity_tokens``); the
        reserve's profiling run at this profile's chunk and max_num_seqs."""
        reserve = kvm.runtime_reserve_bytes(self.model, self.tp, self.chunk_tokens, self.max_num_seqs, self.gpu)
        return kvm.kv_capacity_tokens(self.model, self.gpu, self.tp, self.gpu_memory_utilization, reserve, dp=self.dp)

    def concurrency(self, window_tokens: Num, mean_held_tokens: Num, admission: Admission = "reserve") -> Num:
        """Sequences served at once: ``kv_concurrency`` capped by max_num_seqs."""
        n = np.minimum(self.kv_concurrency(window_tokens, mean_held_tokens, admission), self.max_num_seqs)
        return int(n) if np.ndim(n) == 0 else n

    def kv_concurrency(self, window_tokens: Num, mean_held_tokens: Num, admission: Admission = "reserve") -> Num:
        """Sequences the KV cache alone holds (no max_num_seqs cap):

            reserve: kv // blocks(window) x 16                 (vLLM's logged "maximum concurrency")
            paged:   kv_blocks // (mean_held / 16 + 1/2)        (pool blocks over mean blocks per sequence)

        with sliding-window layers (a share 1 - f of the KV bytes per token) charged at most
        their window's blocks (``kvm.sliding_span_blocks``: while running, or with a prefill
        chunk on top as vLLM reserves for ``reserve``)."""
        kv, f = self.kv_capacity_tokens(), kvm.full_attention_fraction(self.model)
        if admission == "reserve":
            span = kvm.sliding_span_blocks(self.model, self.chunk_tokens)
            return kvm.concurrency_reserve(kv, window_tokens, None, f, span)
        return kvm.concurrency_paged(kv, mean_held_tokens, 2**62, f, kvm.sliding_span_blocks(self.model))

    def _power_and_freq(self, batch: Num, mean_kv: Num, pf_tokens: Num, pf_ctx: Num, prompt_unit: Num = 0.0
                        ) -> tuple[StepBreakdown, Num, Num, Num, Num]:
        """Step breakdown, utilisations, per-GPU power and clock scale; scalar or array.
        Over the cap (TDP or the user's), DVFS lowers the clock to the f in [0.2, 1] where
        power meets the cap (``_dvfs_scale``)."""
        cap = min(self.gpu.tdp_w, self.power_cap_w or self.gpu.tdp_w)
        parts = step_parts(self.model, self.gpu, self.tp, batch, mean_kv, pf_tokens, pf_ctx, self.cal, dp=self.dp,
                           prompt_unit_tokens=prompt_unit)
        energy = self._energy(parts)
        br, um, uc, p = self._power_at(parts, energy, 1.0)
        over = np.asarray(p > cap)
        if not over.any():
            return br, um, uc, p, 1.0
        f = self._dvfs_scale(parts, energy, br, cap, np.asarray(p - cap, float), ~over)   # under the cap: f = 1
        br, um, uc, p = self._power_at(parts, energy, f)
        return br, um, uc, np.minimum(p, cap), f

    def _energy(self, parts: StepParts) -> StepEnergy:
        """Energy per step per GPU of ``parts`` (memory and link; compute at full clock)."""
        return step_energy(self.gpu, self.gpu.flops_for(self.model.weight_dtype), parts.bytes_per_gpu,
                           parts.lin_flops_per_gpu, parts.attn_flops_per_gpu, parts.link_bytes_per_gpu, self.cal,
                           (parts.overhead_ms - self.cal.engine.step_fixed_ms) * 1e-3)

    def _power_at(self, parts: StepParts, energy: StepEnergy, f: Num) -> tuple[StepBreakdown, Num, Num, Num]:
        """Step breakdown, memory and compute utilisations and per-GPU power at clock scale f."""
        br = parts.at(f)
        return br, br.u_mem, br.u_comp, gpu_power_w(self.gpu, energy, br.step_ms, self.cal, f)

    def _dvfs_scale(self, parts: StepParts, energy: StepEnergy, br: StepBreakdown, cap: float, g_one: Num,
                    under: Num) -> Num:
        """The clock scale f in [0.2, 1] where power meets ``cap`` (``br`` the step at f = 1,
        ``g_one`` = P(1) - cap > 0; points flagged ``under`` are below the cap at full clock
        and keep f = 1).  Newton's method with the analytic dP/df (``gpu_power_dfreq_w``),
        safeguarded by bisection inside the bracket it keeps, to 1 mW.  Where even f = 0.2
        exceeds the cap, 0.2."""
        shape = np.shape(g_one)
        lo, hi = np.full(shape, 0.2), np.ones(shape)
        x, g = np.ones(shape), np.asarray(g_one, float) + np.zeros(shape)
        done = np.zeros(shape, bool) | under
        for _ in range(60):
            d = gpu_power_dfreq_w(self.gpu, energy, br.step_ms, parts.dstep_df(br, x), self.cal, x)
            with np.errstate(divide="ignore", invalid="ignore"):
                xn = x - g / d
            xn = np.where((xn > lo) & (xn < hi), xn, 0.5 * (lo + hi))     # outside the bracket: bisect
            xn = np.where(done, x, xn)      # a point stops where it converged: its clock never depends on others
            br, _, _, p = self._power_at(parts, energy, xn)
            gn = np.asarray(p - cap, float) + np.zeros(shape)
            hi, lo = np.where(gn > 0, xn, hi), np.where(gn > 0, lo, xn)
            x, g = xn, gn
            done = (np.abs(g) < 1e-3) | (hi - lo < 1e-9)
            if np.all(done):
                break
        f = np.where(np.abs(g) < 1e-3, x, lo)
        return float(f) if np.ndim(f) == 0 else f

    def operating_point(self, batch: Num, mean_kv_tokens: Num, prefill_tokens_per_step: Num = 0.0,
                        prefill_ctx_tokens: Num = 0.0, decode: bool = True,
                        whole_prompts: bool = False) -> OperatingPoint:
        """The step of ``batch`` sequences holding ``mean_kv_tokens`` each with
        ``prefill_tokens_per_step`` prompt tokens mixed in, at the clock DVFS allows:

            step = roofline(bytes, FLOPs) + all-reduces + overheads   (``roofline.step_parts``)
            P_gpu = min(P_static + E_step / step, cap)               (``power.gpu_power_w``)
            tokens/s = batch / step

        ``decode=False`` skips the decode-only step (``decode_step_ms`` is then NaN): the
        sizing layer's searches do not read it.  ``whole_prompts``: the prefill tokens are the
        mean of whole prompts of 2 x ``prefill_ctx_tokens`` (in chunks of at most
        ``chunk_tokens``) arriving a Poisson number of times per step
        (``roofline.experts_touched``); otherwise they are spread evenly over the steps."""
        unit = np.minimum(2.0 * np.asarray(prefill_ctx_tokens, float), self.chunk_tokens) if whole_prompts else 0.0
        br, um, uc, p, f = self._power_and_freq(batch, mean_kv_tokens, prefill_tokens_per_step, prefill_ctx_tokens,
                                                unit)
        if decode:      # the same batch without prefill, at the same clock
            dparts = step_parts(self.model, self.gpu, self.tp, batch, mean_kv_tokens, cal=self.cal, dp=self.dp)
            dec = dparts.at(f)
            dec_ms = dec.step_ms
            dec_p = np.minimum(gpu_power_w(self.gpu, self._energy(dparts), dec_ms, self.cal, f),
                               min(self.gpu.tdp_w, self.power_cap_w or self.gpu.tdp_w))
        else:
            dec_ms = dec_p = np.nan * np.ones(np.shape(br.step_ms))
        tok_s: Num = np.where(np.asarray(batch) > 0, batch / br.step_ms * 1e3, 0.0)
        tok_s = float(tok_s) if np.ndim(tok_s) == 0 else tok_s
        return OperatingPoint(batch, br.step_ms, dec_ms, prefill_tokens_per_step, tok_s, p,
                              self.gpus_per_instance * p, self.gpus_per_instance, f, um, uc, _scalar(dec_p))

    def steady_state(self, batch: Num, prompt_tokens: Num, output_tokens: Num) -> OperatingPoint:
        """Closed-loop steady state: ``batch`` sequences of prompt P and output O; each step
        finishes batch/O sequences, so batch x P/O prompt tokens are prefilled per step, as
        whole prompts (in chunks of at most ``chunk_tokens``) that a few steps carry."""
        pf = batch * prompt_tokens / np.maximum(output_tokens, 1.0)
        return self.operating_point(batch, prompt_tokens + output_tokens / 2.0, pf, prompt_tokens / 2.0,
                                    whole_prompts=True)

    def saturation(self, window_tokens: int, output_tokens: int,
                   admission: Admission = "reserve") -> tuple[int, OperatingPoint | None]:
        """The law's operating point: n_max sequences each of total length = window
        (prompt = window - output), their prompts prefilled in the same steps."""
        if output_tokens >= window_tokens:
            raise FleetoptError(f"output-tokens ({output_tokens}) must be below every context window "
                                f"(got {window_tokens})")
        prompt = window_tokens - output_tokens
        n = self.concurrency(window_tokens, prompt + output_tokens / 2.0, admission)
        return n, (self.steady_state(n, prompt, output_tokens) if n > 0 else None)

    def query_point(self, batch: int, prompt_tokens: int, output_tokens: int) -> tuple[OperatingPoint, float]:
        """Steady state of ``batch`` queries of P + O tokens and the energy per output token
        (prefill included: it runs inside the same steps)."""
        cap = self.concurrency(prompt_tokens + output_tokens, prompt_tokens + output_tokens / 2.0, "paged")
        if batch > cap:
            raise FleetoptError(f"batch {batch} does not fit: the KV cache of {self.tp} x {self.gpu.id} "
                                f"holds {cap} sequences of {prompt_tokens}+{output_tokens} tokens")
        op = self.steady_state(batch, prompt_tokens, output_tokens)
        return op, energy_per_token_j(op.instance_power_w, op.decode_tokens_per_s)

    def prefill_ms(self, prompt_tokens: Num) -> Num:
        """Chunked prefill of one prompt alone, ms (``fleetopt.physics.roofline.prefill_ms``)."""
        return prefill_ms(self.model, self.gpu, self.tp, prompt_tokens, self.chunk_tokens, self.cal)

    def service_ms(self, prompt_tokens: Num, output_tokens: Num, batch: Num) -> Num:
        """Time a request holds a slot: its prefill plus output_tokens decode steps at ``batch``."""
        op = self.operating_point(batch, prompt_tokens + output_tokens / 2.0)
        return self.prefill_ms(prompt_tokens) + output_tokens * op.step_ms

    def idle_power_w(self) -> float:
        """The catalog's idle power of a GPU holding the model, W."""
        return self.gpu.idle_w

    def uncapped(self) -> PhysicalProfile:
        """The same instance at the GPU's TDP (no ``power_cap_w``)."""
        return replace(self, power_cap_w=None) if self.power_cap_w else self


def _scalar(x: Num) -> Num:
    """A 0-d array as a float, arrays unchanged."""
    return float(x) if np.ndim(x) == 0 else x


def check_fits(model: Model, gpu: Gpu, tp: int, gmu: float = kvm.DEFAULT_GPU_MEMORY_UTILIZATION, dp: int = 1) -> None:
    """Raise a one-line FleetoptError when TP or memory make the instance impossible."""
    if tp < 1:
        raise FleetoptError(f"tp must be >= 1, got {tp}")
    if model.attention == "gqa" and model.heads % tp:
        raise FleetoptError(f"tp {tp} does not divide {model.id}'s {model.heads} attention heads")
    if model.attention == "gqa" and tp > model.kv_heads and tp % model.kv_heads:
        raise FleetoptError(f"tp {tp} is not a multiple of {model.id}'s {model.kv_heads} KV heads")
    w = kvm.weight_bytes_per_gpu(model, tp, dp, gpu)
    budget = kvm.kv_budget_bytes(model, gpu, tp, gmu, dp=dp)
    if budget < kvm.kv_bytes_per_token_per_gpu(model, tp) * kvm.BLOCK_TOKENS * 64:
        raise FleetoptError(
            f"{model.id} does not fit on {tp * dp} x {gpu.id}: weights {w / 2**30:.1f} GiB per GPU leave "
            f"{max(budget, 0) / 2**30:.2f} GiB of KV cache of {gmu:.2f} x {gpu.hbm_bytes / 2**30:.0f} GiB")


def build(model: Model, gpu: Gpu, tp: int, knobs: dict[str, Any]) -> PhysicalProfile:
    """A ``PhysicalProfile`` once the model fits (``check_fits``), on the active calibration
    unless ``knobs`` names one (``cal``); the registry's builder of mode ``physical``."""
    check_fits(model, gpu, tp, knobs.get("gpu_memory_utilization", kvm.DEFAULT_GPU_MEMORY_UTILIZATION),
               knobs.get("dp", 1))
    return PhysicalProfile(model, gpu, tp, **{"cal": active_calibration(), **knobs})
