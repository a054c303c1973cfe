"""Coefficients of the physical model: a few global efficiencies, overheads and energy factors.

They are not per-GPU constants.  Every GPU-specific figure (bandwidth, FLOP/s, TDP, idle
power, memory energy per bit, link energy per bit) comes from the catalog's spec sheets; the
coefficients here say how much of a spec a serving engine achieves and how the energy of an
operation relates to the published per-technology figures.  Each has bounds and a reason
(``BOUNDS``, ``REASONS``); ``fleetopt.fit`` fits them jointly on every shared measurement
(``benchmarks/fidelity.py``) or on a user's own (``fleetopt calibrate``), and the fitted set
is written to / read from a YAML calibration file.

Engine overheads (per step, per layer, per sequence) depend on the serving engine, not the
GPU: ``Engine`` holds them, and measurements made with an older engine (the Argonne runs,
vLLM of 2024 without the V1 engine) carry their own ``Engine`` as a nuisance of that data set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Engine:
    """Host-side and launch overheads of a serving engine (µs or ms per step, per GPU rank)."""

    step_fixed_ms: float = 1.0
    """Per-step host time while the GPU waits (scheduler, input preparation), ms: the GPU draws
    its idle power then, not the busy static power (``power.step_energy``)."""
    layer_us: float = 5.0
    """Per-layer per-step cost of small kernels and launches (norms, rotary, residuals); CUDA
    graphs make it a few µs, eager execution tens of µs.  µs."""
    seq_us: float = 5.0
    """Per-sequence per-step host cost (sampling, detokenisation, block tables), µs."""
    allreduce_us: float = 15.0
    """Latency of one tensor-parallel all-reduce over two GPUs (two all-reduces per layer), µs:
    the engine's collective (vLLM's custom all-reduce, or NCCL/RCCL).  Over tp GPUs the latency
    is allreduce_us x log2(tp): the latency term of recursive doubling, log2(p) rounds of
    messages (Thakur, Rabenseifner & Gropp, IJHPCA 2005)."""
    alltoall_us: float = 40.0
    """Latency of one expert-parallel all-to-all (two per MoE layer), µs."""
    moe_layer_us: float = 0.0
    """Per-MoE-layer per-step cost of the routing kernels (router top-k, token sort and
    alignment to expert blocks, gather/scatter and the weighted sum of the experts' outputs):
    latency-bound launches at decode batch sizes, µs."""
    overhead_power_frac: float = 0.0
    """Power above static while the engine's per-layer, per-MoE-layer and per-sequence overheads
    run, as a fraction of the GPU's TDP - idle: near 0 where they are host work the GPU waits
    for (vLLM V0's Python bookkeeping between kernels), larger where they are GPU kernels
    (vLLM V1 under CUDA graphs: sampling, norms, routing; small latency-bound kernels keep the
    SMs clocked and issuing while moving few bytes)."""
    flops_scale: float = 1.0
    """Fraction of the calibrated tensor efficiency this engine's GEMM libraries reach (1 for
    the reference engine; far below 1 for untuned kernels, e.g. ROCm vLLM of 2024)."""

    def with_(self, **kw: float) -> Engine:
        """A copy with some fields replaced."""
        return replace(self, **kw)


@dataclass(frozen=True)
class Calibration:
    """Efficiencies, overlap, collective latencies and energy factors of the physical model."""

    eta_bw: float = 0.85
    """Achieved fraction of peak memory bandwidth when streaming weights and KV."""
    eta_flops: float = 0.6
    """Achieved fraction of dense tensor FLOP/s in decode and mixed-step GEMMs."""
    eta_prefill: float = 0.6
    """Achieved fraction of dense tensor FLOP/s in prefill chunks (large GEMMs)."""
    roof_p: float = 4.0
    """Sharpness of the soft roofline (a^p + b^p)^(1/p) of one kernel's memory and math time."""
    static_scale: float = 1.0
    """Static power of a busy GPU as a multiple of the catalog's idle power (clocks at boost)."""
    mem_energy_scale: float = 4.0
    """System energy per byte read from HBM as a multiple of the memory technology's device
    energy per bit (the catalog's ``mem_pj_per_bit``): the byte also crosses the PHY, the
    network on chip, L2 and the SM load path."""
    flop_energy_scale: float = 0.5
    """Energy per FLOP as a fraction of the spec sheet's (TDP - idle) / peak FLOP/s."""
    dvfs_exponent: float = 2.0
    """Dynamic energy per operation scales as f^x under a clock cap (voltage tracks frequency)."""
    engine: Engine = field(default_factory=Engine)
    """Overheads of the engine the figures are for (default: vLLM V1, CUDA graphs)."""

    def with_(self, **kw: Any) -> Calibration:
        """A copy with some fields replaced (``engine`` fields by name too: ``seq_us=...``)."""
        eng = {k: kw.pop(k) for k in list(kw) if k in ENGINE_FIELDS}
        out = replace(self, **kw)
        return replace(out, engine=out.engine.with_(**eng)) if eng else out

    def get(self, name: str) -> float:
        """A coefficient by name (engine fields included)."""
        return float(getattr(self.engine, name) if name in ENGINE_FIELDS else getattr(self, name))

    @classmethod
    def names(cls) -> list[str]:
        """Every coefficient's name (engine fields last)."""
        return [f.name for f in fields(cls) if f.name != "engine"] + list(ENGINE_FIELDS)

    def to_dict(self) -> dict[str, float]:
        """Flat mapping name -> value (engine fields included)."""
        return {n: self.get(n) for n in self.names()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        """The inverse of ``to_dict``; unknown names raise ``KeyError``, values are checked
        against ``BOUNDS``."""
        unknown = set(values) - set(cls.names())
        if unknown:
            raise KeyError(sorted(unknown)[0])
        cal = DEFAULT.with_(**{k: float(v) for k, v in values.items()})
        check_bounds(cal)
        return cal


ENGINE_FIELDS = tuple(f.name for f in fields(Engine))

#: Bounds of every coefficient: the fit stays inside them and a calibration file outside is refused.
BOUNDS: dict[str, tuple[float, float]] = {
    "eta_bw": (0.5, 0.95), "eta_flops": (0.2, 0.9), "eta_prefill": (0.2, 0.9), "roof_p": (2.0, 8.0),
    "allreduce_us": (2.0, 60.0), "alltoall_us": (5.0, 300.0), "static_scale": (0.8, 2.0),
    "mem_energy_scale": (1.0, 8.0), "flop_energy_scale": (0.05, 1.5), "dvfs_exponent": (1.0, 3.0),
    "overhead_power_frac": (0.0, 1.0),
    "step_fixed_ms": (0.0, 5.0), "layer_us": (0.0, 300.0), "seq_us": (0.0, 100.0), "moe_layer_us": (0.0, 300.0),
    "flops_scale": (0.01, 1.0),
}

#: Why each coefficient lies where it does (printed by ``fleetopt calibrate`` and the fidelity report).
REASONS: dict[str, str] = {
    "eta_bw": "STREAM-like kernels reach 80-92 % of peak HBM bandwidth on A100/H100/MI300X",
    "eta_flops": "cuBLAS/hipBLASLt dense GEMMs reach at most ~80-90 % of the spec peak",
    "eta_prefill": "whole-prompt prefill (attention, norms, launches between GEMMs) reaches 30-80 % of peak",
    "roof_p": "memory and math overlap imperfectly near the ridge: p=4 costs 19 % there, p=2 41 %",
    "allreduce_us": ("small-message all-reduce latency over 2 GPUs within a node, 5-30 us; "
                     "x log2(tp) over more (recursive doubling's rounds)"),
    "alltoall_us": "expert-parallel dispatch/combine latency within a node",
    "static_scale": "idle figures are taken at rest; with an engine attached and clocks at boost a GPU draws up to ~2x",
    "mem_energy_scale": "the seed's ~20 pJ/bit for a byte moved to the SMs against 3-4 pJ/bit in the HBM device",
    "flop_energy_scale": ("(TDP - idle) / peak FLOP/s is the energy per FLOP at which a GPU at peak rate meets "
                          "TDP; dense GEMMs throttle there, so up to ~1.5x"),
    "dvfs_exponent": "dynamic energy per op ~ V^2 with V roughly tracking f",
    "overhead_power_frac": ("an engine's overheads are host waits (~0) or small GPU kernels that keep the SMs "
                            "clocked and issuing while moving few bytes: activity power below a GEMM's (TDP - idle)"),
    "step_fixed_ms": ("host time per step while the GPU idles (scheduler, input preparation, output "
                      "processing; hidden only where the engine schedules asynchronously)"),
    "layer_us": "small kernels per layer: a few us under CUDA graphs, tens of us eager",
    "seq_us": "per-sequence sampling and bookkeeping per step",
    "moe_layer_us": ("an MoE layer's routing kernels (top-k, sort/align, gather/scatter, weighted sum): "
                     "about 5-8 launches of a few to tens of us each at decode sizes"),
    "flops_scale": "an engine's GEMM libraries against the reference engine's (ROCm vLLM 2024: untuned)",
}


class CalibrationBoundsError(ValueError):
    """A coefficient lies outside ``BOUNDS``."""


def check_bounds(cal: Calibration) -> None:
    """Raise ``CalibrationBoundsError`` naming the first coefficient outside its bounds."""
    for name in Calibration.names():
        lo, hi = BOUNDS[name]
        v = cal.get(name)
        if not lo <= v <= hi:
            raise CalibrationBoundsError(f"{name}: must be within [{lo}, {hi}], got {v}")


#: The packaged calibration (fitted by ``python benchmarks/fidelity.py --fit`` on every shared
#: measurement; cross-validated figures in benchmarks/results/fidelity.md).
DEFAULT = Calibration(eta_bw=0.8683, eta_flops=0.6354, eta_prefill=0.6295, roof_p=4.0, static_scale=1.972,
                      mem_energy_scale=3.738, flop_energy_scale=1.5, dvfs_exponent=2.0,
                      engine=Engine(step_fixed_ms=2.384, layer_us=0.0, seq_us=56.61, allreduce_us=16.96,
                                    alltoall_us=66.46, moe_layer_us=7.746, overhead_power_frac=0.4981, flops_scale=1.0))


def as_plain(cal: Calibration) -> dict[str, Any]:
    """Nested plain mapping (for JSON/YAML)."""
    return asdict(cal)


class _Active:
    """The calibration in use by this process, where it came from and who chose it."""

    __slots__ = ("cal", "label", "source")

    def __init__(self, cal: Calibration, label: str, source: str) -> None:
        self.cal, self.label, self.source = cal, label, source


#: The packaged calibration unless ``use_calibration`` (the CLI's ``--calibration``,
#: ``$FLEETOPT_CALIBRATION``, an instance's ``calibration``) says otherwise.
_ACTIVE = _Active(DEFAULT, "packaged", "packaged")


def active_calibration() -> Calibration:
    """The calibration profiles use when none is passed to them."""
    return _ACTIVE.cal


def active_label() -> str:
    """Where the active calibration came from: ``packaged`` or a file path."""
    return _ACTIVE.label


def active_source() -> str:
    """Who chose the active calibration: ``packaged``, ``cli`` (``--calibration``, the
    environment) or ``instance`` (an instance's ``calibration`` field)."""
    return _ACTIVE.source


def use_calibration(cal: Calibration, label: str, source: str = "cli") -> None:
    """Make ``cal`` the calibration of every profile built from now on in this process."""
    check_bounds(cal)
    _ACTIVE.cal, _ACTIVE.label, _ACTIVE.source = cal, label, source


def calibration_from_mapping(data: Any, where: str) -> Calibration:
    """A calibration file's content (``coefficients:`` name -> value) as a Calibration; one-line
    ``ValueError`` naming the file and the coefficient on any mistake."""
    if not isinstance(data, dict) or not isinstance(data.get("coefficients"), dict):
        raise ValueError(f"{where}: not a calibration file (expected a 'coefficients:' mapping)")
    coeffs = data["coefficients"]
    for k, v in coeffs.items():
        if k not in BOUNDS:
            raise ValueError(f"{where}: coefficients.{k}: unknown coefficient (known: {', '.join(BOUNDS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{where}: coefficients.{k}: expected a number, got {v!r}")
    try:
        return Calibration.from_dict(coeffs)
    except CalibrationBoundsError as e:
        raise ValueError(f"{where}: coefficients.{e}") from None
