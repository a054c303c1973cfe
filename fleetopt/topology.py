"""Topologies: a fleet's pools by upper context length, written as text and parsed back.

``4096:h100x8,65536:h100x8:paged`` is two pools (keys up to 4096 tokens on H100 TP 8, the
rest up to 65536); a mixed pool repeats its upper with shares (``4096:h100x8@0.25,
4096:b200x4@0.75``); a split pool serves prefill and decode on separate instances
(``16384:pd(h100x8/h200x4)``); ``:capW`` is a per-GPU power cap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from fleetopt.errors import FleetoptError

if TYPE_CHECKING:
    from fleetopt.profiles.point import Admission


@dataclass(frozen=True)
class PoolChoice:
    """One pool of a topology: requests with routing key in (previous upper, upper].
    Several choices with the same upper form a *mixed* pool: each takes the fraction
    ``share`` of the range's requests, dispatched at random (so each sub-pool sees Poisson
    arrivals at share x the rate, with the range's length distribution), and is sized
    on its own."""

    upper: int
    gpu: str
    tp: int
    admission: Admission | None = None
    """None: the instance's (or the command's) admission policy."""
    serving: dict[str, Any] | None = field(default=None, compare=False)
    """Per-pool serving overrides (gpu_memory_utilization, max_num_seqs, chunk_tokens,
    power_cap_w) over the instance's ``serving``; set by ``fleetopt refine``."""
    share: float = 1.0
    """Fraction of the range's traffic (1 unless the pool is mixed)."""
    prefill_gpu: str | None = None
    """A split (disaggregated) pool: the prefill instances' GPU type; ``gpu``, ``tp``,
    ``admission`` and ``serving`` are then the decode instances' (``fleetopt.disagg``)."""
    prefill_tp: int | None = None
    prefill_serving: dict[str, Any] | None = field(default=None, compare=False)
    """Serving overrides of the prefill instances (e.g. their own power cap)."""

    @property
    def split(self) -> bool:
        """Whether the pool is split into prefill and decode instances."""
        return self.prefill_gpu is not None

    def spec(self) -> str:
        """The pool as ``parse_topology`` reads it; a per-GPU power cap shows as ``:capW``
        (a split pool shows each phase's own)."""
        dec = f"{self.gpu}x{self.tp}" + (f":{self.admission}" if self.admission else "") + _cap(self.serving)
        if self.prefill_gpu is not None:
            dec = f"pd({self.prefill_gpu}x{self.prefill_tp}{_cap(self.prefill_serving)}/{dec})"
        return f"{self.upper}:{dec}" + (f"@{self.share:.6g}" if self.share != 1.0 else "")


def groups(topology: Sequence[PoolChoice]) -> list[tuple[int, list[int]]]:
    """(upper, indices of its members) of each length range, ascending."""
    out: list[tuple[int, list[int]]] = []
    for k, p in enumerate(topology):
        if out and out[-1][0] == p.upper:
            out[-1][1].append(k)
        else:
            out.append((p.upper, [k]))
    return out


_SPLIT = re.compile(r"(\d+(?:\.\d+)?)([kK])?:pd\(([A-Za-z0-9_.\-]+?)(?:[xX](\d+))?(?::cap(\d+(?:\.\d+)?))?"
                    r"/([A-Za-z0-9_.\-]+?)(?:[xX](\d+))?(?::(reserve|paged))?(?::cap(\d+(?:\.\d+)?))?\)")


def _cap(serving: dict[str, Any] | None) -> str:
    """``:capW`` for a serving override with a per-GPU power cap, else nothing."""
    cap = (serving or {}).get("power_cap_w")
    return f":cap{cap:.6g}" if cap else ""


def topology_spec(topology: Sequence[PoolChoice]) -> str:
    """A topology as the comma-separated text ``parse_topology`` reads back."""
    return ",".join(p.spec() for p in topology)


def parse_topology(spec: str) -> list[PoolChoice]:
    """``UPPER:GPU[xTP][:ADMISSION][:capW][@SHARE],...`` ascending, e.g. ``4096:h100x8,65536:h100x8:paged``
    (``:capW``: a per-GPU power cap in W);
    a mixed pool repeats its upper with shares summing to 1:
    ``4096:h100x8@0.25,4096:b200x4@0.75,65536:b200x8``; a split (disaggregated) pool is
    ``UPPER:pd(PREFILL_GPU[xTP][:capW]/DECODE_GPU[xTP][:ADMISSION][:capW])``, e.g.
    ``16384:pd(h100x8/h200x4)`` (``:capW`` a phase's per-GPU power cap in W)."""
    pools = []
    for i, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        sp = _SPLIT.fullmatch(part)
        if sp:
            caps = [{"power_cap_w": float(c)} if c else None for c in (sp.group(5), sp.group(9))]
            pools.append(PoolChoice(int(float(sp.group(1)) * (1024 if sp.group(2) else 1)), sp.group(6),
                                    int(sp.group(7) or 1), cast("Admission | None", sp.group(8)), caps[1],
                                    prefill_gpu=sp.group(3), prefill_tp=int(sp.group(4) or 1), prefill_serving=caps[0]))
            continue
        if ":pd(" in part:
            raise FleetoptError(f"topology pool {i + 1} '{part}': expected UPPER_TOKENS:pd(PREFILL_GPU[xTP][:capW]/"
                                f"DECODE_GPU[xTP][:reserve|paged][:capW]), e.g. 16384:pd(h100x8/h200x4:cap500)")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kK])?:([A-Za-z0-9_.\-]+?)(?:[xX](\d+))?(?::(reserve|paged))?"
                         r"(?::cap(\d+(?:\.\d+)?))?(?:@(\d*\.?\d+(?:[eE]-?\d+)?))?", part)
        if not m:
            raise FleetoptError(f"topology pool {i + 1} '{part}': expected UPPER_TOKENS:GPU[xTP][:reserve|paged][:capW]"
                                f"[@SHARE], e.g. 4096:h100x8")
        upper = int(float(m.group(1)) * (1024 if m.group(2) else 1))
        share = float(m.group(7)) if m.group(7) else 1.0
        if not 0 < share <= 1:
            raise FleetoptError(f"topology pool {i + 1} '{part}': share must be in (0, 1], got {share:g}")
        pools.append(PoolChoice(upper, m.group(3), int(m.group(4) or 1), cast("Admission | None", m.group(5)),
                                {"power_cap_w": float(m.group(6))} if m.group(6) else None, share=share))
    if not pools:
        raise FleetoptError("topology: no pools given")
    ups = [p.upper for p in pools]
    if any(b < a for a, b in zip(ups, ups[1:])) or ups[0] <= 0:
        raise FleetoptError(f"topology: pool upper bounds must be positive and ascending, got {ups}")
    for up, idx in groups(pools):
        if len(idx) > 1 and any(pools[k].prefill_gpu is not None for k in idx):
            raise FleetoptError(f"topology: the pool ending at {up} is split (pd) and cannot also be mixed")
        tot = sum(pools[k].share for k in idx)
        if abs(tot - 1.0) > 1e-6:
            raise FleetoptError(f"topology: the shares of the pool ending at {up} sum to {tot:g}, not 1 "
                                f"(a mixed pool repeats its upper with @SHARE on each member)")
    return pools
