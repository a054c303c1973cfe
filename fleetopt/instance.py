"""Instance files: the validated schema, ``--set`` overrides and one-line errors.

An instance is YAML read safely (duplicate keys refused) and validated into msgspec records
with unknown fields forbidden (``fleetopt.records``); every error names the field path
(``workload.arrival_rate: must be > 0, got -5``).  Values are checked, not just types:
every number finite, CDF knots a CDF, histogram cells bins with probabilities summing to
1, mixture weights summing to 1, boundaries positive and ascending (``knots_problem``,
``cells_problem`` and the records' ``__post_init__``); ``check_instance`` checks what needs
the catalog (model and GPU ids, TP dividing the heads, power caps above idle power).
Relative file paths inside an instance resolve against the instance's folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from fleetopt.records import (
    Annotated,
    Fraction,
    Meta,
    NonNeg,
    Pos,
    PosInt,
    Record,
    field,
)

SCHEMA_VERSION = 1
PROB_TOL = 1e-3
"""How far from 1 a histogram's fractions or a mixture's weights may sum (rounded data)."""


def _g(x: float) -> str:
    return f"{x:g}"


def knots_problem(knots: Sequence[Sequence[float]]) -> tuple[int | None, int | None, str] | None:
    """Why CDF knots ``[[tokens, cumulative_fraction], ...]`` are not a CDF, as (knot index
    or None for the whole list, 0 tokens / 1 fraction / None, message), or None when they
    are: tokens positive and increasing, fractions in [0, 1], non-decreasing, the last 1."""
    if len(knots) == 0:
        return None, None, "must have at least one knot"
    prev_t, prev_f = 0.0, 0.0
    for i, (t, f) in enumerate(knots):
        if not math.isfinite(t) or t <= 0:
            return i, 0, f"tokens must be a finite number > 0, got {_g(t)}"
        if t <= prev_t:
            return i, 0, f"tokens must increase from knot to knot, got {_g(t)} after {_g(prev_t)}"
        if not (math.isfinite(f) and 0.0 <= f <= 1.0):
            return i, 1, f"cumulative fraction must be in [0, 1], got {_g(f)}"
        if f < prev_f:
            return i, 1, f"cumulative fraction must not decrease, got {_g(f)} after {_g(prev_f)}"
        prev_t, prev_f = t, f
    if abs(prev_f - 1.0) > 1e-9:
        return len(knots) - 1, 1, f"the last knot's cumulative fraction must be 1, got {_g(prev_f)}"
    return None


def cells_problem(cells: Sequence[Sequence[float]]) -> tuple[int | None, int | None, str] | None:
    """Why histogram cells ``[[in_lo, in_hi, out_lo, out_hi, fraction], ...]`` are not a
    length distribution, as (cell index or None for the whole list, field index or None,
    message), or None: bins 0 <= lo < hi, fractions in [0, 1] summing to 1 within PROB_TOL."""
    if len(cells) == 0:
        return None, None, "must have at least one cell"
    total = 0.0
    for i, c in enumerate(cells):
        if len(c) != 5:
            return i, None, f"a cell is [in_lo, in_hi, out_lo, out_hi, fraction], got {len(c)} numbers"
        for j, x in enumerate(c):
            if not math.isfinite(x):
                return i, j, f"must be a finite number, got {x}"
        for j, what in ((0, "input"), (2, "output")):
            if c[j] < 0:
                return i, j, f"{what} bin must start at >= 0, got {_g(c[j])}"
            if c[j + 1] <= c[j]:
                return i, j + 1, f"{what} bin must have lo < hi, got [{_g(c[j])}, {_g(c[j + 1])}]"
        if not 0.0 <= c[4] <= 1.0:
            return i, 4, f"fraction must be in [0, 1], got {_g(c[4])}"
        total += c[4]
    if abs(total - 1.0) > PROB_TOL:
        return None, None, f"fractions must sum to 1 (within {PROB_TOL:g}), got {total:.6g}"
    return None


def _raise_at(field_name: str, problem: tuple[int | None, int | None, str] | None) -> None:
    """Raise a post-init ValueError naming ``field_name.index.field`` (``fleetopt.records``)."""
    if problem is not None:
        i, j, msg = problem
        sub = ".".join([field_name] + [str(x) for x in (i, j) if x is not None])
        raise ValueError(f"@{sub}: {msg}")


class GpuOption(Record, kw_only=True):
    """A candidate GPU type."""

    id: str
    tp: Annotated[list[Annotated[int, Meta(ge=1)]], Meta(min_length=1)] = field(default_factory=lambda: [8])
    """Tensor-parallel degrees to consider."""
    max_gpus: Annotated[int, Meta(ge=0)] | None = None
    """Inventory limit (GPUs of this type across the fleet); None = unlimited."""
    usd_per_gpu_hour: NonNeg | None = None
    """Price override; default from the catalog."""


def _one_source(rec: Any, inline: str) -> None:
    """A distribution given either inline (field ``inline``) or by ``path``, not both."""
    if (getattr(rec, inline) is None) == (rec.path is None):
        raise ValueError(f"give exactly one of '{inline}' or 'path'")


class _Dist(Record, tag_field="type", kw_only=True):
    """A length distribution; ``type`` (the tag) names the kind."""

    @property
    def type(self) -> str:
        """The distribution's kind: ``cdf``, ``histogram``, ``lognormal``, ``mixture``, ``trace``."""
        return str(self.__struct_config__.tag)


class CdfWorkload(_Dist, tag="cdf", kw_only=True):
    """Total tokens by CDF knots (piecewise uniform between them), split into input and
    output by a fixed input share: the published workload construction."""

    knots: list[tuple[float, float]] | None = None
    """[[total_tokens_le, cumulative_fraction], ...]"""
    path: str | None = None
    """CSV with columns total_tokens_le, cumulative_fraction (instead of knots)."""
    input_share: Fraction = 0.8
    samples: Annotated[int, Meta(ge=100, le=1_000_000)] | None = None
    """Paper mode only: size each pool from this many Monte-Carlo draws of its sub-CDF, as
    the published simulator does (3000); unset = exact quadrature (the default)."""
    seed: int = 42
    """Seed of those draws (the published simulator uses 42)."""

    def __post_init__(self) -> None:
        _one_source(self, "knots")
        if self.knots is not None:
            _raise_at("knots", knots_problem(self.knots))


class HistogramWorkload(_Dist, tag="histogram", kw_only=True):
    """A joint (input, output) histogram: each cell a rectangle of lengths and the fraction
    of requests in it (each cell becomes points_per_dim^2 midpoints)."""

    cells: list[tuple[float, float, float, float, float]] | None = None
    """[[in_lo, in_hi, out_lo, out_hi, fraction], ...]"""
    path: str | None = None
    """CSV with columns input_bin_lo, input_bin_hi, output_bin_lo, output_bin_hi, fraction."""
    dataset: str | None = None
    """Row filter on a 'dataset' column of the CSV."""
    points_per_dim: Annotated[int, Meta(ge=1, le=32)] = 4
    """Midpoints per cell and dimension."""

    def __post_init__(self) -> None:
        _one_source(self, "cells")
        if self.cells is not None:
            _raise_at("cells", cells_problem(self.cells))


class TraceWorkload(_Dist, tag="trace", kw_only=True):
    """A request trace (CSV, one request a row): every request a point of equal weight."""

    path: str
    """The CSV file, relative to the instance's folder."""
    input_column: str = "ContextTokens"
    output_column: str = "GeneratedTokens"
    time_column: str | None = "TIMESTAMP"
    """Arrival times (for ``arrival_rate: trace`` and trace-driven simulation); None: no times."""


class LognormalWorkload(_Dist, tag="lognormal", kw_only=True):
    """Independent lognormal input and output lengths (medians in tokens, sigmas of the
    logs), on a quantile grid."""

    input_median: Pos
    input_sigma: NonNeg
    output_median: Pos
    output_sigma: NonNeg
    max_tokens: Pos | None = None
    """Inputs capped at this length (None: uncapped)."""


class MixtureComponent(Record, kw_only=True):
    """One workload of a mixture and its share of the requests."""

    weight: Annotated[float, Meta(ge=0, le=1)]
    """Share of the requests (the weights sum to 1; 0 switches a component off)."""
    workload: CdfWorkload | HistogramWorkload | TraceWorkload | LognormalWorkload
    output_scale: Pos = 1.0
    """This component's output lengths x this factor (a long-query share: e.g. 15 for
    test-time scaling), applied before ``workload.output_scale``."""


class MixtureWorkload(_Dist, tag="mixture", kw_only=True):
    """Several workloads blended by weight (e.g. chat and long reasoning queries)."""

    components: Annotated[dict[str, MixtureComponent], Meta(min_length=1)]

    def __post_init__(self) -> None:
        total = sum(c.weight for c in self.components.values())
        if abs(total - 1.0) > PROB_TOL:
            raise ValueError(f"@components: the weights must sum to 1 (within {PROB_TOL:g}), got {total:.6g}")


class LoadProfile(Record, kw_only=True):
    """A day's load shape: 24 relative hourly weights.  The busiest hour runs at
    ``workload.arrival_rate`` (the fleet is sized for it); hour h at that rate x w_h / max(w).
    Read by ``fleetopt energy``, which integrates the day."""

    hourly_weights: Annotated[list[NonNeg], Meta(min_length=24, max_length=24)]
    idle_instances: Literal["keep_idle", "switch_off"] = "keep_idle"
    """Instances an hour does not need: kept on at idle power (GPUs' idle W + host share),
    or switched off (0 W)."""

    def __post_init__(self) -> None:
        if max(self.hourly_weights) <= 0:
            raise ValueError("at least one hourly weight must be > 0")


class Workload(Record, kw_only=True):
    """The request stream: a length distribution, an arrival rate and the routing key."""

    distribution: CdfWorkload | HistogramWorkload | TraceWorkload | LognormalWorkload | MixtureWorkload
    arrival_rate: Pos | Literal["trace"] = 100.0
    """Requests per second, or 'trace' for a trace's own mean rate (the peak hour's rate
    when ``load_profile`` is given)."""
    routing_key: Literal["total", "input", "input_plus_max_output"] = "total"
    max_output_tokens: PosInt | None = None
    output_scale: Pos = 1.0
    """Every request's output length x this factor, input unchanged (test-time scaling:
    reasoning models emit more tokens for the same prompt); 1 = as given."""
    load_profile: LoadProfile | None = None


class SloTargets(Record, kw_only=True):
    """The latency targets every pool must meet, and its utilisation cap."""

    ttft_p99_ms: Pos = 500.0
    tpot_p99_ms: Pos | None = None
    max_utilization: Annotated[float, Meta(gt=0, le=1)] = 0.85


class Power(Record, kw_only=True):
    """The site: facility power cap, PUE, host power and the basis the cap is checked on."""

    facility_cap_mw: Pos | None = None
    """Facility power cap, MW (None: no cap)."""
    pue: Annotated[float, Meta(ge=1.0)] = 1.0
    """Power usage effectiveness: facility power = IT power x PUE."""
    host_w_per_node: NonNeg = 0.0
    """Host (CPU, NIC, fans) power per 8-GPU node, charged pro rata to GPUs."""
    provisioning: Literal["peak", "tdp", "expected"] = "peak"
    """Basis of the power cap: power at the slot-capped batch, nameplate TDP, or expected."""


class Compress(Record, kw_only=True):
    """Compress-and-route: requests up to gamma x B go to the pool of window B, their prompt
    compressed to fit, with a success probability (failures stay in the longer pool)."""

    gamma: Annotated[float, Meta(ge=1.0)] = 2.0
    success: Annotated[float, Meta(ge=0, le=1)] = 1.0
    accounting: Literal["paper", "consistent"] = "consistent"
    """paper: served at the compressed length (80/20), outputs credited uncompressed;
    consistent: prompt compressed to B - output, outputs served and credited as they are."""


class Pools(Record, kw_only=True):
    """The candidate pools: how many ranges, where they may be cut, admission policies,
    mixed pools, compress-and-route and disaggregation."""

    max_pools: Annotated[int, Meta(ge=1, le=8)] = 3
    """At most this many length ranges (K)."""
    boundaries: Literal["auto"] | list[int] = "auto"
    """Candidate range boundaries, tokens ascending, or 'auto' (quantiles of the routing key)."""
    auto_count: Annotated[int, Meta(ge=1, le=256)] = 32
    """Candidate boundaries taken from the distribution's quantiles when 'auto'."""
    admission: Annotated[list[Literal["reserve", "paged"]], Meta(min_length=1)] = field(
        default_factory=lambda: ["paged"])
    max_window: PosInt | None = None
    """Window of the last pool; default: the longest request, rounded up to a power of 2."""
    paper_boundary: PosInt | None = None
    """The paper's fixed two-pool split for this workload (baseline)."""
    compress: Compress | None = None
    split_grid: Annotated[int, Meta(ge=1, le=8)] = 1
    """Mixed pools: with m > 1 a length range may be shared by several GPU/TP configs, each
    taking k/m of its requests (k = 1..m, dispatched at random), each sized on its own; the
    MILP is exact over that grid of splits.  1 = one config per pool."""
    disaggregation: Literal["off", "allow", "only"] | bool = "off"
    """Disaggregated prefill/decode serving (``fleetopt.disagg``): ``off`` plans aggregated
    pools only; ``allow`` lets the MILP choose, per length range, an aggregated pool or a
    split one (prefill instances, KV transfer, decode instances, each phase on its own GPU
    type, TP and power cap); ``only`` splits every range.  Physical mode only.  (YAML reads
    a bare ``off`` as false: false is ``off``, true ``allow``.)"""
    kv_link: str = "infiniband-ndr"
    """Link carrying the KV cache from prefill to decode instances, by id in
    ``fleetopt/catalog/links.yaml`` (``infiniband-ndr``, ``roce-400g``, ``nvlink``)."""
    phase_power_caps: Annotated[list[Annotated[float, Meta(ge=0.3, le=1.0)]], Meta(min_length=1)] = field(
        default_factory=lambda: [1.0])
    """DVFS caps the disaggregation-aware solve may use, as fractions of TDP (1 = the
    instance's ``serving.power_cap_w`` or TDP): each phase of a split pool picks its own,
    and aggregated pools are offered the same caps (``pools.disaggregation`` allow/only)."""

    def __post_init__(self) -> None:
        if isinstance(self.disaggregation, bool):      # YAML's bare off/on
            self.disaggregation = "allow" if self.disaggregation else "off"
        if self.boundaries != "auto":
            b = self.boundaries
            if not b:
                raise ValueError("@boundaries: must have at least one boundary (or be 'auto')")
            for i, x in enumerate(b):
                if x <= 0:
                    raise ValueError(f"@boundaries.{i}: must be > 0, got {x}")
                if i and x <= b[i - 1]:
                    raise ValueError(f"@boundaries.{i}: boundaries must be ascending, got {x} after {b[i - 1]}")
            if self.max_window is not None and b[-1] > self.max_window:
                raise ValueError(f"@boundaries.{len(b) - 1}: {b[-1]} is above pools.max_window ({self.max_window})")


class Serving(Record, kw_only=True):
    """The serving engine's settings every instance runs with (vLLM's names)."""

    gpu_memory_utilization: Annotated[float, Meta(gt=0, le=1)] = 0.9
    """Share of HBM the engine may use (weights, KV cache, activations)."""
    max_num_seqs: Annotated[int, Meta(ge=1)] = 1024
    """Sequences an instance runs at most."""
    chunk_tokens: Annotated[int, Meta(ge=16)] = 8192
    """Prefill chunk, tokens per step (vLLM's max_num_batched_tokens)."""
    power_cap_w: Pos | None = None
    """Per-GPU DVFS power cap, W (None: the GPU's TDP)."""


class Solver(Record, kw_only=True):
    """The MILP solver's settings (HiGHS)."""

    time_limit_s: Pos = 60.0
    """Limit of the whole solve's MILP stages together (bounds, optimum, tie-break, Dinkelbach)."""
    mip_gap: NonNeg = 1e-6
    threads: Annotated[int, Meta(ge=1)] = 1
    seed: Annotated[int, Meta(ge=0)] = 0
    presolve: bool = False
    """HiGHS presolve.  Off by default: on this path-structured model its probing costs 3-10x
    the whole branch and bound (measured on the heterogeneous instance: 0.15 s against
    0.03 s, same optimum); the optimum is proven either way."""
    interface: Literal["highspy", "pyomo"] = "highspy"
    """How the model reaches HiGHS: its rows as a matrix through highspy (default, no Pyomo
    import) or the Pyomo model through pyomo.contrib.solver.solvers.highs.Highs."""


class Instance(Record, kw_only=True, dict=True):
    """A planning problem, as an instance file states it (``fleetopt.loading`` reads one;
    ``fleetopt.problem.Problem.from_instance`` compiles it).  Besides its fields it may
    carry where it was read from (``fleetopt.loading.source_of``), so that the relative
    paths inside it resolve against its folder."""

    schema_version: int = SCHEMA_VERSION
    name: str = ""
    description: str = ""
    mode: Literal["physical", "paper"] = "physical"
    model: str
    gpus: Annotated[list[GpuOption], Meta(min_length=1)]
    workload: Workload
    slo: SloTargets = field(default_factory=SloTargets)
    power: Power = field(default_factory=Power)
    objective: Literal["max_tokens_per_joule", "min_cost", "max_throughput"] = "max_tokens_per_joule"
    pools: Pools = field(default_factory=Pools)
    serving: Serving = field(default_factory=Serving)
    solver: Solver = field(default_factory=Solver)
    calibration: str | None = None
    """A calibration file from ``fleetopt calibrate`` (relative to the instance's folder);
    the command line's ``--calibration`` takes precedence.  Default: the packaged one."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the instance format, generated from the records (shipped as
    ``fleetopt/instance.schema.json``; ``tests/test_api.py`` checks it is current)."""
    import msgspec

    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "fleetopt instance",
            **msgspec.json.schema(Instance)}
