"""Coefficients of the physical model, fitted once to measured H100 runs.

They are efficiencies and power fractions, not per-GPU constants: other GPUs follow from
their spec sheets (bandwidth, FLOP/s, TDP, idle power) through the same equations.  The
values below are written by ``benchmarks/calibrate.py`` (least squares on log residuals of
per-GPU power and inter-token latency over ML.ENERGY v3 H100 runs, and prefill times from
the Splitwise H100 profile); ``benchmarks/results/calibration.md`` records the residuals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Calibration:
    """Efficiency and overhead terms of the roofline, and the power-model fractions."""

    eta_bw: float = 0.80
    """Achieved fraction of peak memory bandwidth when streaming weights and KV."""
    eta_flops: float = 0.55
    """Achieved fraction of dense tensor FLOP/s in decode/mixed-step GEMMs."""
    eta_prefill: float = 0.55
    """Achieved fraction of dense tensor FLOP/s in prefill chunks."""
    roof_p: float = 3.0
    """Sharpness of the soft roofline max((a^p + b^p)^(1/p)); large p is the hard max."""
    step_fixed_ms: float = 1.0
    """Per-step scheduler and launch overhead, ms."""
    layer_us: float = 10.0
    """Per-layer per-step overhead (norms, rotary, small kernels), microseconds."""
    seq_us: float = 40.0
    """Per-sequence per-step overhead (sampling, detokenise, input prep), microseconds."""
    allreduce_us: float = 12.0
    """Latency of one tensor-parallel all-reduce, microseconds (two per layer)."""
    alltoall_us: float = 30.0
    """Latency of one expert-parallel all-to-all, microseconds (two per MoE layer)."""
    p_base: float = 0.35
    """Power drawn while serving anything, as a fraction of (TDP - idle)."""
    p_mem: float = 0.25
    """Power per unit of memory-bandwidth utilisation, fraction of (TDP - idle)."""
    p_comp: float = 0.60
    """Power per unit of tensor-core utilisation, fraction of (TDP - idle)."""
    dvfs_exponent: float = 2.0
    """Dynamic power per operation scales as f^x under a power cap (V roughly tracks f)."""
    chat_prompt_tokens: float = 1000.0
    """Mean prompt (context) tokens of the ML.ENERGY LM-Arena chat runs (not published; fitted)."""

    def with_(self, **kw) -> "Calibration":
        return replace(self, **kw)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


#: Fitted H100 defaults (``python benchmarks/calibrate.py --fit``; residuals in
#: benchmarks/results/calibration.md).
DEFAULT = Calibration(eta_bw=0.8441, eta_flops=0.9286, eta_prefill=0.3416, roof_p=1.5, step_fixed_ms=0.0,
                      layer_us=44.7588, seq_us=68.0075, allreduce_us=13.2041, alltoall_us=88.5288,
                      p_base=0.6235, p_mem=0.0, p_comp=0.9962, dvfs_exponent=2.0, chat_prompt_tokens=211.6526)
