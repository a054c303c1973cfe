"""Profiles by registry: the ONE place a mode's name is read.

A mode is a ``Mode`` record in ``MODES``: how it builds a ``Profile`` for a (model, GPU,
TP) instance and the few things it changes outside its profiles, as data the other layers
read without asking which mode they are in:

* ``knobs``: whether serving settings (gpu_memory_utilization, max_num_seqs, chunk_tokens,
  a per-GPU power cap, data-parallel attention) exist in the mode; refine searches them
  only then;
* ``admission``: the one admission policy the mode has (the published model reserves the
  whole window), or None for the instance's choice;
* ``sub_cdf_routing``: whether a CDF workload is routed as the published simulator does
  (``fleetopt.profiles.paper_routing.paper_pool_traffic``);
* ``splits_phases``: whether prefill and decode can be sized on separate instances
  (disaggregated pools, ``fleetopt.disagg``): the published model has no prefill physics of
  its own.

``physical`` (default, ``fleetopt.profiles.physical``), ``paper`` and ``paper-computed``
(``fleetopt.profiles.paper``) are registered by the ``module:function`` of their builder,
imported when a mode is first used; a new mode is a module and one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from fleetopt import lazy
from fleetopt.catalog import Catalog, Gpu, Model, load_catalog
from fleetopt.errors import FleetoptError
from fleetopt.profiles.point import Admission, OperatingPoint

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile

    Builder = Callable[[Model, Gpu, int, dict[str, Any]], Profile]
    """(model, gpu, tp, knobs) -> Profile."""

__all__ = ["MODES", "Admission", "Mode", "OperatingPoint", "make_profile", "mode_of",
           "profile_with_knobs"]

class Mode(msgspec.Struct, frozen=True, kw_only=True):
    """One mode: its profile builder and what it changes outside its profiles (module
    docstring)."""

    name: str
    builder: str
    """``module:function`` of its ``Builder`` (imported on first use, ``fleetopt.lazy``)."""
    knobs: bool
    """Serving settings exist (the instance's ``serving`` applies; refine searches them)."""
    admission: Admission | None
    """The mode's only admission policy, or None for the instance's choice."""
    sub_cdf_router: str | None
    """``module:class`` of the router of CDF workloads by the published simulator's
    sub-CDF construction (None: routed by key)."""
    splits_phases: bool
    """Prefill and decode can be sized apart (split prefill/decode pools)."""

    @property
    def sub_cdf_routing(self) -> bool:
        """Whether CDF workloads are routed by the published sub-CDF construction."""
        return self.sub_cdf_router is not None

    def builder_function(self) -> Builder:
        """The mode's builder, its module imported now (a problem loads it before sizing
        forks workers, so they do not each import it)."""
        builder: Builder = lazy.load(self.builder)
        return builder

    def build(self, model: Model, gpu: Gpu, tp: int, knobs: dict[str, Any]) -> Profile:
        """The mode's profile of ``tp`` x ``gpu`` serving ``model`` with serving ``knobs``."""
        return self.builder_function()(model, gpu, tp, knobs)

    def admissions(self, wanted: Sequence[Admission]) -> list[Admission]:
        """The admission policies candidate pools take: the instance's (deduplicated, in
        order) or the mode's only one."""
        return [self.admission] if self.admission else list(dict.fromkeys(wanted))

    def admission_for(self, wanted: Admission) -> Admission:
        """The admission policy a pool that asks for ``wanted`` gets."""
        return self.admission or wanted

    def profile(self, model: str | Model, gpu: str | Gpu, tp: int, catalog: Catalog | None = None,
                **knobs: Any) -> Profile:
        """The profile of ``tp`` x ``gpu`` serving ``model`` (ids or catalog records),
        with serving ``knobs`` where the mode has them."""
        cat = catalog or load_catalog()
        m = model if isinstance(model, Model) else cat.model(model)
        g = gpu if isinstance(gpu, Gpu) else cat.gpu(gpu)
        return self.build(m, g, tp, knobs if self.knobs else {})


_SUB_CDF = "fleetopt.profiles.paper_routing:SubCdfRouting"

MODES: dict[str, Mode] = {
    "physical": Mode(name="physical", builder="fleetopt.profiles.physical:build", knobs=True, admission=None,
                     sub_cdf_router=None, splits_phases=True),
    "paper": Mode(name="paper", builder="fleetopt.profiles.paper:build", knobs=False, admission="reserve",
                  sub_cdf_router=_SUB_CDF, splits_phases=False),
    "paper-computed": Mode(name="paper-computed", builder="fleetopt.profiles.paper:build_computed", knobs=False,
                           admission="reserve", sub_cdf_router=_SUB_CDF, splits_phases=False),
}


def mode_of(name: str) -> Mode:
    """The registered mode called ``name`` (one line naming the known ones otherwise)."""
    mode = MODES.get(name)
    if mode is None:
        raise FleetoptError(f"mode must be one of {', '.join(MODES)}, got '{name}'")
    return mode


def make_profile(mode: str, model: str | Model, gpu: str | Gpu, tp: int, catalog: Catalog | None = None,
                 **knobs: Any) -> Profile:
    """The profile of ``tp`` x ``gpu`` serving ``model`` in ``mode`` (``Mode.profile``)."""
    return mode_of(mode).profile(model, gpu, tp, catalog, **knobs)


def profile_with_knobs(mode: str, model: str, gpu: str, tp: int, catalog: Catalog,
                       power_cap_w: float | None = None, gpu_memory_utilization: float | None = None,
                       dp: int = 1) -> Profile:
    """``make_profile`` with knobs given by a user (``fleetopt law`` and ``estimate``),
    each checked first with a one-line error: data-parallel attention only where the mode
    has knobs, dp >= 1 and an MoE model; a power cap finite, > 0 and at least the GPU's
    idle power; gpu_memory_utilization in (0, 1].  Where the mode has no knobs, the power
    cap and memory utilisation are ignored."""
    spec = mode_of(mode)
    kw: dict[str, Any] = {}
    if dp != 1:
        if not spec.knobs:
            raise FleetoptError("dp: data-parallel attention is modelled in physical mode only")
        if dp < 1:
            raise FleetoptError(f"dp must be >= 1, got {dp}")
        m = catalog.model(model)
        if not m.is_moe:
            raise FleetoptError(f"dp: data-parallel attention with expert parallelism needs an MoE model; "
                                f"{m.id} is dense")
        kw["dp"] = dp
    if spec.knobs:
        if power_cap_w is not None:
            if not math.isfinite(power_cap_w) or power_cap_w <= 0:
                raise FleetoptError(f"power-cap-w must be a finite number > 0, got {power_cap_w}")
            idle = catalog.gpu(gpu).idle_w
            if power_cap_w < idle:
                raise FleetoptError(f"power-cap-w must be at least the GPU's idle power ({idle:g} W), "
                                    f"got {power_cap_w:g}")
            kw["power_cap_w"] = power_cap_w
        if gpu_memory_utilization is not None:
            if not 0 < gpu_memory_utilization <= 1:
                raise FleetoptError(f"gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
            kw["gpu_memory_utilization"] = gpu_memory_utilization
    return spec.profile(model, gpu, tp, catalog, **kw)
