"""An instance's operating point, and the types the profiles share."""

from __future__ import annotations

from typing import Literal, cast

import msgspec

from fleetopt.errors import FleetoptError
from fleetopt.physics.energy import tokens_per_joule
from fleetopt.units import Num as Num

Admission = Literal["reserve", "paged"]
"""``reserve``: a sequence holds its whole context window from admission (vLLM's
"maximum concurrency"); ``paged``: it holds only the tokens it has (paged KV blocks)."""



class OperatingPoint(msgspec.Struct, frozen=True):
    """An instance in steady state: ``batch`` sequences decoding, prompts prefilled in the
    same steps (chunked prefill) at ``prefill_tokens_per_step``.  Fields are scalars or
    arrays of one shape.

    Output tokens per second of the instance: ``decode_tokens_per_s = batch / step_ms x
    1000``; its power ``instance_power_w = tp x power_per_gpu_w`` (every GPU of the
    instance; the host share is added by the fleet layer)."""

    batch: Num
    step_ms: Num
    """Mean time between a sequence's output tokens, prefill work included, ms."""
    decode_step_ms: Num
    """The same step without prefill mixed in, ms."""
    prefill_tokens_per_step: Num
    decode_tokens_per_s: Num
    """Output tokens per second of the whole instance."""
    power_per_gpu_w: Num
    instance_power_w: Num
    """TP x per-GPU power (host share excluded; the fleet layer adds it)."""
    tp: int
    """GPUs in the instance (tp, or tp x dp with expert parallelism)."""
    freq_scale: Num = 1.0
    """Clock as a fraction of the full clock (below 1 when DVFS meets a power cap)."""
    u_mem: Num = 0.0
    """Fraction of the step the memory system is busy."""
    u_comp: Num = 0.0
    """Fraction of the step the tensor cores are busy."""
    decode_power_per_gpu_w: Num = float("nan")
    """Per-GPU power of the pure decode step (no prefill mixed in), W."""

    @property
    def tokens_per_joule(self) -> Num:
        """Instance output tokens per joule, every GPU charged: tok/s / instance W."""
        return tokens_per_joule(self.decode_tokens_per_s, self.instance_power_w)

    @property
    def tok_per_w_paper(self) -> Num:
        """The paper's convention: instance tok/s over ONE GPU's W (flaw 1: tp x too high)."""
        return tokens_per_joule(self.decode_tokens_per_s, self.power_per_gpu_w)


def as_admission(value: str) -> Admission:
    """``value`` as an admission policy (the CLI's and the API's strings checked once)."""
    if value in ("reserve", "paged"):
        return cast("Admission", value)
    raise FleetoptError(f"admission: must be 'reserve' or 'paged', got {value!r}")
