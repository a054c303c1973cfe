"""Per-GPU power from energy per operation, and its derivative in the clock (for DVFS).

    P(f) = P_static + (E_mem + E_link + E_comp f^x - (P_static - P_idle) h + a (TDP - P_idle) o) / S(f)

per GPU and per step of S seconds: P_static the power of a GPU holding the model with its
clocks up (the catalog's idle power times a calibrated factor), E_mem the bytes read from
memory times the energy per byte, E_link the bytes sent over the scale-up link times its
energy per byte, E_comp the FLOPs times the energy per FLOP (by dtype), h the engine's host
time per step, when the GPU waits at idle power, o the engine's GPU-side overheads per step
(per layer, per MoE layer, per sequence), when small kernels keep the SMs busy at a fraction
a (the engine's ``overhead_power_frac``) of the dynamic headroom.  Under a clock
scale f < 1 (a power cap or TDP) compute time stretches and the dynamic energy per FLOP
falls as f^x.  No floor is tied to TDP: a GPU draws what its operations cost.
"""

from __future__ import annotations

import msgspec
import numpy as np

from fleetopt.catalog import Gpu
from fleetopt.physics.calibration import DEFAULT, Calibration
from fleetopt.units import Num


def static_power_w(gpu: Gpu, cal: Calibration = DEFAULT) -> float:
    """Static power of a busy GPU: idle_w x static_scale, W.  Source: catalog idle figure."""
    return gpu.idle_w * cal.static_scale


def mem_energy_j_per_byte(gpu: Gpu, cal: Calibration = DEFAULT) -> float:
    """System energy per byte read from memory: mem_energy_scale x mem_pj_per_bit x 8 bits, J.
    Source: the memory technology's device pJ/bit (catalog) and the on-chip path factor."""
    return cal.mem_energy_scale * gpu.mem_pj_per_bit * 8e-12


def link_energy_j_per_byte(gpu: Gpu) -> float:
    """Energy per byte sent over the scale-up link: link_pj_per_bit x 8, J (catalog figure)."""
    return gpu.link_pj_per_bit * 8e-12


def flop_energy_j(gpu: Gpu, peak_flops: float, cal: Calibration = DEFAULT) -> float:
    """Energy per FLOP at a given dtype's peak rate: flop_energy_scale x (TDP - idle) / peak, J.
    Source: the spec sheet's TDP at the dtype's peak FLOP/s bounds the energy per FLOP."""
    return cal.flop_energy_scale * (gpu.tdp_w - gpu.idle_w) / peak_flops


def host_gap_s(cal: Calibration = DEFAULT) -> float:
    """Seconds per step the GPU waits for the host (the engine's ``step_fixed_ms``): a
    synchronous engine (vLLM before V1) schedules between steps while the GPU idles; V1
    overlaps it.  Source: the engine's step structure."""
    return cal.engine.step_fixed_ms * 1e-3


class StepEnergy(msgspec.Struct, frozen=True):
    """Energy of one step per GPU, split by how it scales with the clock (J; scalars or arrays)."""

    fixed_j: Num
    """Memory and link energy less the host-gap credit: independent of the SM clock."""
    comp_j: Num
    """Compute energy at full clock: scales as f^x."""


def step_energy(gpu: Gpu, weight_dtype_flops: float, bytes_per_gpu: Num, lin_flops: Num, attn_flops: Num,
                link_bytes: Num,
                cal: Calibration = DEFAULT, busy_overhead_s: Num = 0.0) -> StepEnergy:
    """E_mem + E_link and E_comp of a step: bytes x J/byte, link bytes x J/byte, linear FLOPs
    at the weights' dtype energy plus attention FLOPs at the bf16 energy.  E_mem carries a
    credit -(P_static - P_idle) h for the h seconds of host time per step (``host_gap_s``), so
    that P = P_static + E / S draws idle power during the gap:
    P = (P_static (S - h) + P_idle h + E_dyn) / S, and the activity energy of the engine's
    ``busy_overhead_s`` seconds of GPU-side overheads, overhead_power_frac x (TDP - idle) x o."""
    fixed = bytes_per_gpu * mem_energy_j_per_byte(gpu, cal) + link_bytes * link_energy_j_per_byte(gpu)
    # the engine's per-step host time h: the GPU waits at idle power, not busy static power
    fixed = fixed - (static_power_w(gpu, cal) - gpu.idle_w) * host_gap_s(cal)
    # the engine's per-layer/sequence overheads: overhead_power_frac x (TDP - idle) above static
    fixed = fixed + cal.engine.overhead_power_frac * (gpu.tdp_w - gpu.idle_w) * busy_overhead_s
    comp = (lin_flops * flop_energy_j(gpu, weight_dtype_flops, cal)
            + attn_flops * flop_energy_j(gpu, gpu.bf16_flops, cal))
    return StepEnergy(fixed, comp)


def gpu_power_w(gpu: Gpu, energy: StepEnergy, step_ms: Num, cal: Calibration = DEFAULT, freq_scale: Num = 1.0) -> Num:
    """P = P_static + (E_fixed + E_comp f^x) / S, W (scalar or array; 0-length steps draw P_static).
    Not clipped: callers apply TDP or a cap through DVFS."""
    s = np.asarray(step_ms, float) * 1e-3
    dyn = energy.fixed_j + energy.comp_j * np.asarray(freq_scale, float) ** cal.dvfs_exponent
    with np.errstate(divide="ignore", invalid="ignore"):
        p = static_power_w(gpu, cal) + np.where(s > 0, dyn / np.where(s > 0, s, 1.0), 0.0)
    return float(p) if np.ndim(p) == 0 else p


def gpu_power_dfreq_w(gpu: Gpu, energy: StepEnergy, step_ms: Num, dstep_df: Num, cal: Calibration = DEFAULT,
                      freq_scale: Num = 1.0) -> Num:
    """dP/df (W per unit clock scale): with D(f) = E_fixed + E_comp f^x and S(f) the step,
    dP/df = (x E_comp f^(x-1) S - D S') / S^2 (quotient rule; S' = dstep_df, ms per unit f)."""
    f, x = np.asarray(freq_scale, float), cal.dvfs_exponent
    s, ds = np.asarray(step_ms, float) * 1e-3, np.asarray(dstep_df, float) * 1e-3
    d = energy.fixed_j + energy.comp_j * f ** x
    return (x * energy.comp_j * f ** (x - 1.0) * s - d * ds) / (s * s)
