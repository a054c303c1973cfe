"""An instance's step time and power as one table lookup, for the event loop.

Exact in the batch (one row per batch 1..slots), linear in log(held KV) between 24 grid
points from 16 tokens to the window; the figures are the profile's operating points, the
same physics the sizing layer reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile


KV_GRID = 24
"""Held-KV grid points of a table."""


StepAndPower = Callable[[int, float], tuple[float, float]]
"""(batch, held KV tokens) -> (step ms, instance W)."""


def step_tables(profile: Profile, slots: int, window: float, pf_per_seq: float, pf_ctx: float,
                host_w_per_gpu: float) -> StepAndPower:
    """(step ms, instance W) at (batch, held KV) as one table lookup: exact in the batch,
    linear in log(held KV) between 24 grid points from 16 tokens to the window."""
    b = np.arange(1, slots + 1, dtype=float)[:, None]
    kv = np.geomspace(16.0, max(window, 32.0), KV_GRID)[None, :]
    bb, kk = np.broadcast_arrays(b, kv)
    op = profile.operating_point(bb.ravel(), kk.ravel(), bb.ravel() * pf_per_seq, np.full(bb.size, pf_ctx),
                                 whole_prompts=True)
    gpus = profile.gpus_per_instance
    step: list[list[float]] = np.asarray(op.step_ms, float).reshape(bb.shape).tolist()
    powr_w = gpus * (np.asarray(op.power_per_gpu_w, float) + host_w_per_gpu)
    powr: list[list[float]] = np.asarray(powr_w, float).reshape(bb.shape).tolist()
    l0, k = math.log(16.0), (KV_GRID - 1) / (math.log(max(window, 32.0)) - math.log(16.0))
    top = KV_GRID - 1
    log = math.log

    def f(batch: int, held: float) -> tuple[float, float]:
        i = (batch if batch < slots else slots) - 1
        s, p = step[i], powr[i]
        x = (log(held) - l0) * k if held > 16.0 else 0.0
        j = int(x)
        if j >= top:
            return s[top], p[top]
        a = x - j
        return s[j] + a * (s[j + 1] - s[j]), p[j] + a * (p[j + 1] - p[j])

    return f


def at_kv(step_and_power: StepAndPower, kv: float) -> StepAndPower:
    """The step function with the held KV fixed at ``kv`` (paper mode: the virtual clock
    counts milliseconds, not tokens, so the held KV is not tracked)."""
    return lambda batch, _held: step_and_power(batch, kv)
