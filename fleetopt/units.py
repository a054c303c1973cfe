"""Units and conversions shared by the layers (names carry their units).

Power: W in the physics and sizing, kW in plan tables, MW in the instance's cap.
Energy: J per token, Wh per query.
"""

from __future__ import annotations

from typing import Any

Num = Any
"""A float or a numpy array of floats: the physics and queueing formulas broadcast, and a
scalar argument gives a Python float back."""

GPUS_PER_NODE = 8
"""GPUs per server node: ``power.host_w_per_node`` (CPUs, NICs, fans) is charged pro rata,
host_w_per_node / 8 per GPU."""

W_PER_KW = 1e3
W_PER_MW = 1e6
J_PER_WH = 3600.0


def host_w_per_gpu(host_w_per_node: float) -> float:
    """A GPU's share of its node's host power: W_host / GPUS_PER_NODE."""
    return host_w_per_node / GPUS_PER_NODE


def mw_to_w(mw: float) -> float:
    """W = MW x 1e6."""
    return mw * W_PER_MW
