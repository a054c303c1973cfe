"""Per-GPU power from the operating point, the DVFS power cap, instance and facility power."""

from __future__ import annotations

from fleetopt.catalog import Gpu
from fleetopt.physics.calibration import DEFAULT, Calibration


def gpu_power_w(gpu: Gpu, u_mem: float, u_comp: float, cal: Calibration = DEFAULT,
                freq_scale: float = 1.0) -> float:
    """Board power of a busy GPU: idle + (TDP - idle) x (base + a_mem u_mem + a_comp u_comp),
    u_mem and u_comp the fractions of the step the memory system and the tensor cores are
    busy; the compute and clock terms scale by f^x at frequency scale f (dynamic power per
    op ~ V^2, V tracking f).  Not clipped: callers apply the TDP or a cap through DVFS."""
    dyn = cal.p_base * freq_scale + cal.p_mem * u_mem + cal.p_comp * u_comp * freq_scale ** cal.dvfs_exponent
    return gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * dyn


def gpu_power_dfreq_w(gpu: Gpu, memory_ms, compute_ms, step_ms, dstep_df, cal: Calibration = DEFAULT,
                      freq_scale: float = 1.0):
    """d ``gpu_power_w`` / d f (W per unit clock scale) for a step whose busy times are
    u_mem = memory_ms / step and u_comp = compute_ms / step, compute_ms stretched as 1/f:
    the derivative of p_base f + p_mem M/S + p_comp (C1/f)/S f^x with C1 = compute_ms f."""
    f, x = freq_scale, cal.dvfs_exponent
    c1 = compute_ms * f
    d_mem = -memory_ms * dstep_df / step_ms**2
    d_comp = c1 * ((x - 1.0) * f ** (x - 2.0) / step_ms - f ** (x - 1.0) * dstep_df / step_ms**2)
    return (gpu.tdp_w - gpu.idle_w) * (cal.p_base + cal.p_mem * d_mem + cal.p_comp * d_comp)


def instance_power_w(gpu_power_w_: float, tp: int, host_w_per_gpu: float = 0.0) -> float:
    """Instance power = TP x per-GPU power + the instance's share of host power."""
    return tp * (gpu_power_w_ + host_w_per_gpu)


def facility_power_w(it_power_w: float, pue: float = 1.0) -> float:
    """Facility power = IT power x PUE."""
    return it_power_w * pue
