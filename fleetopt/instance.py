"""Instance files: the validated schema, ``--set`` overrides and one-line errors.

An instance is YAML read with ``yaml.safe_load`` and validated by pydantic models with
``extra="forbid"``; every error names the field path (``workload.arrival_rate: must be > 0,
got -5``).  Relative file paths inside an instance resolve against the instance's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetopt import FleetoptError

SCHEMA_VERSION = 1


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuOption(_M):
    """A candidate GPU type."""

    id: str
    tp: list[int] = Field(default_factory=lambda: [8], min_length=1)
    """Tensor-parallel degrees to consider."""
    max_gpus: int | None = Field(None, ge=0)
    """Inventory limit (GPUs of this type across the fleet); None = unlimited."""
    usd_per_gpu_hour: float | None = Field(None, ge=0)
    """Price override; default from the catalog."""

    @field_validator("tp")
    @classmethod
    def _tp_pos(cls, v):
        if any(t < 1 for t in v):
            raise ValueError(f"every tp must be >= 1, got {v}")
        return v


class _InlineOrFile(_M):
    """A distribution given either inline (field ``_inline``) or by ``path``, not both."""

    _inline: str = ""

    @model_validator(mode="after")
    def _one_source(self):
        if (getattr(self, self._inline) is None) == (self.path is None):
            raise ValueError(f"give exactly one of '{self._inline}' or 'path'")
        return self


class CdfWorkload(_InlineOrFile):
    type: Literal["cdf"]
    knots: list[tuple[float, float]] | None = None
    """[[total_tokens_le, cumulative_fraction], ...]"""
    path: str | None = None
    """CSV with columns total_tokens_le, cumulative_fraction (instead of knots)."""
    input_share: float = Field(0.8, gt=0, lt=1)
    samples: int | None = Field(None, ge=100, le=1_000_000)
    """Paper mode only: size each pool from this many Monte-Carlo draws of its sub-CDF, as
    the published simulator does (3000); unset = exact quadrature (the default)."""
    seed: int = 42
    """Seed of those draws (the published simulator uses 42)."""
    _inline = "knots"


class HistogramWorkload(_InlineOrFile):
    type: Literal["histogram"]
    cells: list[tuple[float, float, float, float, float]] | None = None
    """[[in_lo, in_hi, out_lo, out_hi, fraction], ...]"""
    path: str | None = None
    """CSV with columns input_bin_lo, input_bin_hi, output_bin_lo, output_bin_hi, fraction."""
    dataset: str | None = None
    """Row filter on a 'dataset' column of the CSV."""
    points_per_dim: int = Field(4, ge=1, le=32)
    _inline = "cells"


class TraceWorkload(_M):
    type: Literal["trace"]
    path: str
    input_column: str = "ContextTokens"
    output_column: str = "GeneratedTokens"
    time_column: str | None = "TIMESTAMP"


class LognormalWorkload(_M):
    type: Literal["lognormal"]
    input_median: float = Field(gt=0)
    input_sigma: float = Field(ge=0)
    output_median: float = Field(gt=0)
    output_sigma: float = Field(ge=0)
    max_tokens: float | None = Field(None, gt=0)


class MixtureComponent(_M):
    weight: float = Field(ge=0)
    """Relative weight (normalised over the components; 0 switches a component off)."""
    workload: Union[CdfWorkload, HistogramWorkload, TraceWorkload, LognormalWorkload] = Field(discriminator="type")


class MixtureWorkload(_M):
    type: Literal["mixture"]
    components: dict[str, MixtureComponent] = Field(min_length=1)


class Workload(_M):
    """The request stream: a length distribution, an arrival rate and the routing key."""

    distribution: Union[CdfWorkload, HistogramWorkload, TraceWorkload, LognormalWorkload, MixtureWorkload] = Field(
        discriminator="type")
    arrival_rate: Union[float, Literal["trace"]] = 100.0
    """Requests per second, or 'trace' for a trace's own mean rate."""
    routing_key: Literal["total", "input", "input_plus_max_output"] = "total"
    max_output_tokens: int | None = Field(None, gt=0)

    @field_validator("arrival_rate")
    @classmethod
    def _rate(cls, v):
        if not isinstance(v, str) and not v > 0:
            raise ValueError(f"must be > 0, got {v:g}")
        return v


class Slo(_M):
    ttft_p99_ms: float = Field(500.0, gt=0)
    tpot_p99_ms: float | None = Field(None, gt=0)
    max_utilization: float = Field(0.85, gt=0, le=1)


class Power(_M):
    facility_cap_mw: float | None = Field(None, gt=0)
    pue: float = Field(1.0, ge=1.0)
    host_w_per_node: float = Field(0.0, ge=0)
    """Host (CPU, NIC, fans) power per 8-GPU node, charged pro rata to GPUs."""
    provisioning: Literal["peak", "tdp", "expected"] = "peak"
    """Basis of the power cap: power at the slot-capped batch, nameplate TDP, or expected."""


class Compress(_M):
    """Compress-and-route: requests up to gamma x B go to the pool of window B, their prompt
    compressed to fit, with a success probability (failures stay in the longer pool)."""

    gamma: float = Field(2.0, ge=1.0)
    success: float = Field(1.0, ge=0, le=1)
    accounting: Literal["paper", "consistent"] = "consistent"
    """paper: served at the compressed length (80/20), outputs credited uncompressed;
    consistent: prompt compressed to B - output, outputs served and credited as they are."""


class Pools(_M):
    max_pools: int = Field(3, ge=1, le=8)
    boundaries: Union[Literal["auto"], list[int]] = "auto"
    auto_count: int = Field(32, ge=1, le=256)
    """Candidate boundaries taken from the distribution's quantiles when 'auto'."""
    admission: list[Literal["reserve", "paged"]] = Field(default_factory=lambda: ["paged"], min_length=1)
    max_window: int | None = Field(None, gt=0)
    """Window of the last pool; default: the longest request, rounded up to a power of 2."""
    paper_boundary: int | None = Field(None, gt=0)
    """The paper's fixed two-pool split for this workload (baseline)."""
    compress: Compress | None = None


class Serving(_M):
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int = Field(1024, ge=1)
    chunk_tokens: int = Field(8192, ge=16)
    power_cap_w: float | None = Field(None, gt=0)


class Solver(_M):
    time_limit_s: float = Field(60.0, gt=0)
    mip_gap: float = Field(1e-6, ge=0)
    threads: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)
    presolve: bool = False
    """HiGHS presolve.  Off by default: on this path-structured model its probing costs 3-10x
    the whole branch and bound (measured on the heterogeneous instance: 0.15 s against
    0.03 s, same optimum); the optimum is proven either way."""
    interface: Literal["highspy", "pyomo"] = "highspy"
    """How the model reaches HiGHS: its rows as a matrix through highspy (default, no Pyomo
    import) or the Pyomo model through pyomo.contrib.solver.solvers.highs.Highs."""


class Instance(_M):
    """A planning problem."""

    schema_version: int = SCHEMA_VERSION
    name: str = ""
    description: str = ""
    mode: Literal["physical", "paper"] = "physical"
    model: str
    gpus: list[GpuOption] = Field(min_length=1)
    workload: Workload
    slo: Slo = Field(default_factory=Slo)
    power: Power = Field(default_factory=Power)
    objective: Literal["max_tokens_per_joule", "min_cost", "max_throughput"] = "max_tokens_per_joule"
    pools: Pools = Field(default_factory=Pools)
    serving: Serving = Field(default_factory=Serving)
    solver: Solver = Field(default_factory=Solver)

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v):
        if v != SCHEMA_VERSION:
            raise ValueError(f"this fleetopt reads schema_version {SCHEMA_VERSION}, got {v}")
        return v

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_shorthand(cls, v):
        if isinstance(v, list):
            return [{"id": g} if isinstance(g, str) else g for g in v]
        return v


_MSG = {"greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}", "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}", "missing": "is required", "extra_forbidden": "is not a known field",
        "int_parsing": "must be an integer", "float_parsing": "must be a number", "int_from_float": "must be an integer",
        "bool_parsing": "must be true or false", "literal_error": "must be one of {expected}",
        "too_short": "must have at least {min_length} item(s)", "union_tag_invalid": "type must be one of {expected_tags}",
        "union_tag_not_found": "needs a 'type' ({expected_tags})" }


def _one_line(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p in
                                              ("cdf", "histogram", "trace", "lognormal", "mixture"))]
    path = ".".join(loc) or "(top level)"
    tmpl = _MSG.get(err["type"])
    ctx = err.get("ctx", {}) or {}
    if tmpl:
        try:
            msg = tmpl.format(**ctx)
        except (KeyError, IndexError):
            msg = err["msg"]
    else:
        msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    if err["type"] not in ("missing", "extra_forbidden") and not isinstance(given, (dict, list)) and "got" not in msg:
        msg += f", got {given!r}"
    return f"{prefix}{path}: {msg}"


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_set(data: dict, assignment: str) -> None:
    """Apply one ``key.path=value`` override in place (value parsed as YAML; list items by index)."""
    if "=" not in assignment:
        raise FleetoptError(f"--set {assignment}: expected key.path=value")
    path, text = assignment.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise FleetoptError(f"--set {assignment}: empty key path")
    node: Any = data
    for i, k in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(node, list):
            try:
                node = node[int(k)]
            except (ValueError, IndexError):
                raise FleetoptError(f"--set {path}: '{k}' is not an index of {'.'.join(keys[:i]) or 'the list'}") from None
            continue
        if not isinstance(node, dict):
            raise FleetoptError(f"--set {path}: '{'.'.join(keys[:i])}' is not a mapping")
        if k not in node or node[k] is None:
            node[k] = [] if nxt.isdigit() else {}
        node = node[k]
    last = keys[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = _parse_value(text)
        except (ValueError, IndexError):
            raise FleetoptError(f"--set {path}: '{last}' is not an index of the list") from None
    elif isinstance(node, dict):
        node[last] = _parse_value(text)
    else:
        raise FleetoptError(f"--set {path}: parent is not a mapping")


def load_instance_data(path: str | Path) -> dict:
    from fleetopt.files import read_yaml_mapping

    return read_yaml_mapping(path, "instance file")


def validate_instance(data: dict, source: str = "") -> Instance:
    try:
        return Instance.model_validate(data)
    except ValidationError as exc:
        raise FleetoptError(_one_line(exc, f"{source}: " if source else "")) from None


def load_instance(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Instance, Path]:
    """Read, override and validate an instance; returns it with its folder (for relative paths)."""
    data = load_instance_data(path)
    for a in overrides:
        apply_set(data, a)
    return validate_instance(data, str(path)), Path(path).resolve().parent
