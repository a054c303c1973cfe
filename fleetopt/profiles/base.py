"""The ``Profile`` protocol: what every layer above needs from one serving instance.

A profile answers for one (model, GPU type, tensor-parallel degree, serving settings)
instance under one mode: how many sequences its KV cache holds, how long a step takes at
a batch and a held context, what it draws, how long a prompt takes to prefill and how long
a request holds a slot.  Sizing, routing, the simulator and the energy reports call these
methods and nothing else; they never ask which mode a profile belongs to.  Two families
implement it (``fleetopt.profiles.physical`` and ``fleetopt.profiles.paper``); the
registry in ``fleetopt.profiles`` builds them.

Modules import ``Profile`` for their annotations only (under ``TYPE_CHECKING``): a
protocol costs its import at start-up and nothing checks it at run time.

Every method takes scalars or numpy arrays (broadcast together) unless it says otherwise,
and returns the same shape.  Units are in the names: ``_ms`` milliseconds, ``_w`` watts,
``_tokens`` tokens.
"""

from __future__ import annotations

from typing import Protocol

from fleetopt.catalog import Gpu, Model
from fleetopt.profiles.point import Admission, Num, OperatingPoint


class Profile(Protocol):
    """One serving instance under one mode (module docstring).

    Attributes: ``model``, ``gpu``, ``tp`` (tensor-parallel degree), ``dp`` (data-parallel
    attention ranks with expert parallelism, 1 otherwise), ``gpus_per_instance`` (tp x dp),
    ``mode`` (the registry's name, a label only), ``chunked_prefill`` (True: prompts are
    prefilled in chunks mixed into the decode steps, so a request's service time is its
    prefill plus ``out`` steps of the pool's batch; False: the published model, whose steps
    hold no prefill and whose service time per request is ``service_ms``)."""

    @property
    def model(self) -> Model:
        """The served model (catalog record)."""
        ...

    @property
    def gpu(self) -> Gpu:
        """The GPU type (catalog record)."""
        ...

    @property
    def tp(self) -> int:
        """Tensor-parallel degree."""
        ...

    @property
    def mode(self) -> str:
        """The registry's name of the profile's mode (a label: nothing branches on it)."""
        ...

    @property
    def dp(self) -> int:
        """Data-parallel attention ranks (1 without expert parallelism)."""
        ...

    @property
    def gpus_per_instance(self) -> int:
        """GPUs of one instance: tp x dp."""
        ...

    @property
    def chunked_prefill(self) -> bool:
        """Whether prefill runs in chunks inside the decode steps (see the class docstring)."""
        ...

    @property
    def calibration_label(self) -> str:
        """The calibration its figures come from (``-`` when it has none)."""
        ...

    def kv_capacity_tokens(self) -> int:
        """Tokens the instance's KV cache holds."""
        ...

    def concurrency(self, window_tokens: Num, mean_held_tokens: Num, admission: Admission = "reserve") -> Num:
        """Sequences the instance serves at once (KV-limited, capped by max_num_seqs):
        reserve: kv_tokens // window; paged: kv_blocks // blocks of the mean held length."""
        ...

    def kv_concurrency(self, window_tokens: Num, mean_held_tokens: Num, admission: Admission = "reserve") -> Num:
        """Sequences the KV cache alone holds (no max_num_seqs cap)."""
        ...

    def operating_point(self, batch: Num, mean_kv_tokens: Num, prefill_tokens_per_step: Num = 0.0,
                        prefill_ctx_tokens: Num = 0.0, decode: bool = True,
                        whole_prompts: bool = False) -> OperatingPoint:
        """The step at ``batch`` sequences holding ``mean_kv_tokens`` each, with
        ``prefill_tokens_per_step`` prompt tokens (of mean attended context
        ``prefill_ctx_tokens``) mixed in; ``decode=False`` may skip the pure-decode figures;
        ``whole_prompts``: the prefill tokens are the mean of whole prompts (of 2 x that
        context, in chunks) that some steps carry, not an even spread (matters for MoE)."""
        ...

    def prefill_ms(self, prompt_tokens: Num) -> Num:
        """Time to prefill one prompt, ms."""
        ...

    def service_ms(self, prompt_tokens: Num, output_tokens: Num, batch: Num) -> Num:
        """Time a request holds a slot at ``batch``: prefill + output_tokens steps, ms."""
        ...

    def idle_power_w(self) -> float:
        """Per-GPU power of an instance with nothing to do, W."""
        ...

    def uncapped(self) -> Profile:
        """The same instance without a DVFS power cap (itself when it has none)."""
        ...

    def usd_per_instance_hour(self, usd_per_gpu_hour: float | None = None) -> float:
        """Price of one instance for an hour: GPUs x the GPU's hourly price (``usd_per_gpu_hour``
        when given, else the catalog's), or the profile's own published price."""
        ...

    def saturation(self, window_tokens: int, output_tokens: int,
                   admission: Admission = "reserve") -> tuple[int, OperatingPoint | None]:
        """The 1/W law's point: n_max sequences of the window's length and their step
        (None when none fits)."""
        ...

    def query_point(self, batch: int, prompt_tokens: int, output_tokens: int) -> tuple[OperatingPoint, float]:
        """Steady state of ``batch`` queries of P + O tokens and the energy per output token, J."""
        ...
