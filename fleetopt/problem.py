"""The compiled problem: an instance read once into what every lower layer needs.

``Problem.from_instance`` validates the instance again as it is now (so a field edited
after loading is checked like a file), checks it against the catalog, reads the workload's
files into the length distribution and the arrival rate, and builds, once:

* the SLO the sizing reads (``fleetopt.sizing.Slo``);
* the facility power (``FacilityPower``: cap in W, PUE, host W per GPU, provisioning basis);
* the candidate configs (GPU type x TP x admission) with their inventories and prices;
* the candidate boundaries of the pool ranges (``candidate_boundaries``);
* the router (``fleetopt.routing.Router``: by routing key, or the published sub-CDFs);
* the mode (``fleetopt.profiles.Mode``) and the calibration in use.

Columns, evaluation, the solve, the simulator, refine and sweeps take a ``Problem``; none
of them reads the instance file or its folder again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from fleetopt import lazy
from fleetopt.catalog import Catalog, Model, load_catalog
from fleetopt.errors import FleetoptError
from fleetopt.instance import CdfWorkload, Compress, Instance, Pools, Serving, Solver
from fleetopt.loading import revalidate, source_of
from fleetopt.physics.calibration import Calibration, active_calibration, active_label
from fleetopt.profiles import Mode, mode_of
from fleetopt.profiles.point import Admission
from fleetopt.records import replace
from fleetopt.routing import Router
from fleetopt.sizing import Slo
from fleetopt.units import host_w_per_gpu, mw_to_w
from fleetopt.workload import LengthDist
from fleetopt.workload_files import load_workload, resolve_path

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile

ROUND_TOKENS = 64
"""Automatic boundaries are rounded up to a multiple of this many tokens."""


class FacilityPower(msgspec.Struct, frozen=True):
    """The site's power: the cap the plan must fit under, and how a pool's power is counted
    against it."""

    cap_w: float | None
    """Facility power cap, W (None: no cap)."""
    pue: float
    """Power usage effectiveness: facility W = IT W x PUE."""
    host_w_per_gpu: float
    """Host (CPUs, NICs, fans) power charged to each GPU, W."""
    basis: str
    """``peak`` | ``tdp`` | ``expected``: the IT power the cap is checked on."""
    cap_mw: float | None = None
    """The cap as the instance states it, MW (for messages)."""

    def provisioned_w(self, instances: Any, it_power_w: Any, peak_instance_power_w: Any, gpus: Any,
                      tdp_w: float) -> Any:
        """Facility power a pool is provisioned for, the quantity the facility cap bounds;
        scalars or arrays:

            expected:  P = IT_expected x PUE                       (power at the mean batch)
            peak:      P = n x P_instance(slot-capped batch) x PUE
            tdp:       P = GPUs x (TDP + host per GPU) x PUE"""
        if self.basis == "expected":
            it = it_power_w
        elif self.basis == "peak":
            it = instances * peak_instance_power_w
        else:
            it = gpus * (tdp_w + self.host_w_per_gpu)
        return it * self.pue


class Config(msgspec.Struct, frozen=True):
    """A candidate pool configuration: GPU type, TP and admission, with the type's
    inventory (None: unlimited) and the instance's price override (None: the catalog's)."""

    gpu: str
    tp: int
    admission: Admission
    max_gpus: int | None
    price: float | None
    cap: float = 1.0
    """Each GPU capped at this fraction of its TDP (below 1 only for the disaggregation-aware
    solve's capped aggregated columns; 1 keeps the instance's serving settings)."""


def candidate_boundaries(pools: Pools, dist: LengthDist, context: int = 0) -> list[int]:
    """b_1 < ... < b_M (b_0 = 0 is implicit), choices named:

    * a list in the instance is used as given (values above the last window dropped);
    * ``auto`` takes ``auto_count`` quantiles of the routing key, rounded up to a multiple
      of 64 tokens and deduplicated, below the last window;
    * the last window is ``pools.max_window``, else the longest routing key rounded up to a
      power of two (not above ``context``, the model's window, when known);
    * ``pools.paper_boundary`` (the baseline's split) is always a candidate."""
    p = pools
    top = p.max_window or int(2 ** math.ceil(math.log2(max(dist.max_key, 2.0))))
    if context and not p.max_window:
        top = min(top, max(context, int(math.ceil(dist.max_key))))
    if p.boundaries != "auto":
        top = p.max_window or max(p.boundaries)
        inner = sorted({int(b) for b in p.boundaries if 0 < b < top})
    else:
        qs = [dist.quantile_key(k / p.auto_count) for k in range(1, p.auto_count)]
        inner = sorted({int(math.ceil(q / ROUND_TOKENS) * ROUND_TOKENS) for q in qs})
        inner = [b for b in inner if 0 < b < top]
    if p.paper_boundary and p.paper_boundary < top:     # the baseline's split is always a candidate
        inner = sorted(set(inner) | {int(p.paper_boundary)})
    return [*inner, int(top)]


class Problem(msgspec.Struct, frozen=True, eq=False):
    """An instance compiled once (module docstring).  Frozen: ``with_rate``,
    ``with_objective`` and ``with_compress`` return new problems."""

    instance: Instance
    """The validated instance it was compiled from (for reports and keys, not for the layers)."""
    source: str
    """The file it was read from ("" for a mapping)."""
    base: Path
    """The folder its relative paths resolve against."""
    catalog: Catalog
    mode: Mode
    model: Model
    dist: LengthDist
    rate: float
    """Arrival rate, requests/s."""
    slo: Slo
    power: FacilityPower
    configs: tuple[Config, ...]
    boundaries: tuple[int, ...]
    router: Router
    objective: str
    pools: Pools
    serving: Serving
    solver: Solver
    calibration: Calibration
    calibration_label: str

    @classmethod
    def from_instance(cls, instance: Instance, catalog: Catalog | None = None, *, dist: LengthDist | None = None,
                      rate: float | None = None) -> Problem:
        """Compile ``instance`` (module docstring).  ``dist`` and ``rate``, when given, are
        the instance's own workload already read (``fleetopt sweep`` reuses them across
        cases that differ in the rate only)."""
        cat = catalog or load_catalog()
        inst = revalidate(instance, cat)
        source, base = source_of(inst)
        mode = mode_of(inst.mode)
        mode.builder_function()                 # its module loaded once, before any fork
        model = cat.model(inst.model)
        if dist is None or rate is None:
            d, r = load_workload(inst.workload, base)
            dist, rate = dist or d, r if rate is None else rate
        _check_requests(dist, model)
        p, pw = inst.pools, inst.power
        power = FacilityPower(mw_to_w(pw.facility_cap_mw) if pw.facility_cap_mw is not None else None, pw.pue,
                              host_w_per_gpu(pw.host_w_per_node), pw.provisioning, pw.facility_cap_mw)
        configs = tuple(Config(cat.gpu(g.id).id, tp, a, g.max_gpus, _price(inst, cat.gpu(g.id).id, cat))
                        for g in inst.gpus for tp in sorted(set(g.tp)) for a in mode.admissions(p.admission))
        bounds = tuple(candidate_boundaries(p, dist, _context(model)))
        return cls(inst, source, base, cat, mode, model, dist, float(rate),
                   Slo(inst.slo.ttft_p99_ms, inst.slo.tpot_p99_ms, inst.slo.max_utilization), power, configs,
                   bounds, _router(inst, mode, dist, p.compress), inst.objective, p, inst.serving, inst.solver,
                   active_calibration(), active_label())

    # ---- what the layers ask of it ----------------------------------------------------------

    @property
    def name(self) -> str:
        """The instance's name."""
        return self.instance.name

    @property
    def context_tokens(self) -> int:
        """The model's context window, tokens (0 when the catalog does not say)."""
        return _context(self.model)

    def profile(self, gpu: str, tp: int, serving: dict[str, Any] | None = None) -> Profile:
        """The profile of ``tp`` x ``gpu`` under the mode, the instance's serving settings
        and the problem's calibration; ``serving`` overrides the settings for one pool
        (the mode ignores them when it has no knobs)."""
        s = self.serving
        kw: dict[str, Any] = dict(gpu_memory_utilization=s.gpu_memory_utilization, max_num_seqs=s.max_num_seqs,
                                  chunk_tokens=s.chunk_tokens, power_cap_w=s.power_cap_w, cal=self.calibration)
        kw.update(serving or {})
        return self.mode.profile(self.model, gpu, tp, self.catalog, **kw)

    def price(self, gpu_id: str) -> float | None:
        """The instance's price override for a GPU type, USD per GPU-hour (None: the catalog's)."""
        return _price(self.instance, gpu_id, self.catalog)

    def stock(self) -> dict[str, int]:
        """Inventory per GPU type: the least ``max_gpus`` any option names for it."""
        out: dict[str, int] = {}
        for cf in self.configs:
            if cf.max_gpus is not None:
                out[cf.gpu] = min(out.get(cf.gpu, cf.max_gpus), cf.max_gpus)
        return out

    def path(self, p: str) -> Path:
        """A path as the instance writes it, resolved against its folder."""
        return resolve_path(self.base, p)

    def check_windows(self, uppers: Any) -> None:
        """Refuse (one line, exit 2) pools whose window exceeds the model's context window."""
        ctx = self.context_tokens
        for up in uppers:
            if ctx and up > ctx:
                raise FleetoptError(f"topology: the pool up to {up} tokens is longer than {self.instance.model}'s "
                                    f"context window of {ctx} tokens")

    # ---- variants -------------------------------------------------------------------------

    def with_rate(self, rate: float) -> Problem:
        """The same problem at another arrival rate (req/s)."""
        return msgspec.structs.replace(self, rate=float(rate))

    def with_objective(self, objective: str) -> Problem:
        """The same problem under another objective."""
        return msgspec.structs.replace(self, objective=objective)

    def with_compress(self, compress: Compress | None) -> Problem:
        """The same problem with another compress-and-route setting (its router follows)."""
        pools = replace(self.pools, compress=compress)
        return msgspec.structs.replace(self, pools=pools, router=self.router.with_compress(compress))


def _context(model: Model) -> int:
    """The model's context window in tokens (0 when the catalog does not say)."""
    return int(getattr(model, "max_context_tokens", 0) or 0)


def _check_requests(dist: LengthDist, model: Model) -> None:
    """Refuse (one line, exit 2) requests longer than the model's context window: no server
    takes them."""
    ctx = _context(model)
    if not ctx:
        return
    tot = dist.inp + dist.out
    over = tot > ctx
    if over.any():
        raise FleetoptError(f"workload: {100 * float(dist.w[over].sum()):.3g} % of requests (up to {tot.max():.0f} "
                            f"tokens) are longer than {model.id}'s context window of {ctx} tokens")


def _price(inst: Instance, gpu_id: str, catalog: Catalog) -> float | None:
    """The first price override the instance gives for the GPU type (None: none)."""
    for g in inst.gpus:
        if catalog.gpu(g.id).id == gpu_id and g.usd_per_gpu_hour is not None:
            return g.usd_per_gpu_hour
    return None


def _router(inst: Instance, mode: Mode, dist: LengthDist, compress: Compress | None) -> Router:
    """By routing key, or by the published sub-CDFs when the mode routes a CDF workload so
    (inline knots, the paper's compress accounting if any, outputs not scaled: scaled
    outputs are routed by key)."""
    d = inst.workload.distribution
    paper = (mode.sub_cdf_routing and d.type == "cdf" and getattr(d, "knots", None) is not None
             and (compress is None or compress.accounting == "paper") and inst.workload.output_scale == 1.0)
    if not paper:
        return Router(dist, compress)
    if compress is not None and compress.success < 1:
        raise FleetoptError(f"pools.compress.success: must be 1 with pools.compress.accounting: paper in paper mode "
                            f"(the published sizing compresses every request up to gamma x B), got "
                            f"{compress.success:g}; use accounting: consistent for a success rate")
    gamma = compress.gamma if compress is not None else 1.0
    assert isinstance(d, CdfWorkload) and d.knots is not None and mode.sub_cdf_router is not None
    return Router(dist, compress, lazy.load(mode.sub_cdf_router)(d.knots, d.input_share, d.samples, d.seed, gamma))

