"""Links that carry KV caches between prefill and decode instances, and the transfer's
time and energy: pure functions of bytes, lanes and the link's figures
(``fleetopt/catalog/links.yaml``, each figure sourced there).

    B(p) = p x kv_bytes_per_token                (one copy of the prompt's KV)
    T_kv(p) = latency + B(p) / (lanes x lane_bytes_per_s x efficiency)
    E_kv(p) = 8 B(p) x pJ/bit
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from fleetopt.catalog import Gpu
from fleetopt.errors import FleetoptError
from fleetopt.files import parse_yaml
from fleetopt.physics.kv import kv_bytes_per_token

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fleetopt.profiles.base import Profile


@dataclass(frozen=True)
class KvLink:
    """A link carrying KV caches between instances (``fleetopt/catalog/links.yaml``)."""

    id: str
    name: str
    lane_gb_s: float | None
    """Per-direction GB/s of one lane (one GPU's NIC); None = the GPU's scale-up link."""
    efficiency: float
    latency_us: float
    pj_per_bit: float | None
    """Energy per bit moved; None = the GPU's scale-up link figure."""
    same_gpu_type: bool
    """Both phases must run on the same GPU type (a link inside one node or NVLink domain)."""

    def lane_bytes_per_s(self, gpu: Gpu) -> float:
        """Bytes per second of one lane (the link's figure, or the GPU's scale-up link)."""
        return (self.lane_gb_s if self.lane_gb_s is not None else gpu.link_gb_s) * 1e9

    def energy_pj_per_bit(self, gpu: Gpu) -> float:
        """Energy per bit moved, pJ (the link's figure, or the GPU's scale-up link)."""
        return self.pj_per_bit if self.pj_per_bit is not None else float(getattr(gpu, "link_pj_per_bit", 5.5))


@lru_cache(maxsize=1)
def load_links() -> dict[str, KvLink]:
    """The packaged link catalog, by id."""
    data = parse_yaml(resources.files("fleetopt.catalog").joinpath("links.yaml").read_text())
    return {e["id"]: KvLink(e["id"], e.get("name", ""), e.get("lane_gb_s"), float(e["efficiency"]),
                            float(e["latency_us"]), e.get("pj_per_bit"), bool(e.get("same_gpu_type", False)))
            for e in data["links"]}


def kv_link(link_id: str) -> KvLink:
    """The link called ``link_id`` (one line naming the known ones otherwise)."""
    links = load_links()
    if link_id not in links:
        raise FleetoptError(f"pools.kv_link: unknown link '{link_id}'; known: {', '.join(sorted(links))}")
    return links[link_id]


# ---- KV transfer: pure functions ------------------------------------------------------------

def kv_transfer_bytes(prompt_tokens: ArrayLike, kv_bytes_per_token: float) -> np.ndarray:
    """Bytes of one prompt's KV cache: tokens x the model's KV bytes per token (one copy)."""
    return np.asarray(prompt_tokens, float) * kv_bytes_per_token


def kv_transfer_ms(transfer_bytes: ArrayLike, lanes: int, lane_bytes_per_s: float, efficiency: float,
                   latency_us: float) -> np.ndarray:
    """latency + bytes / (lanes x lane rate x efficiency), ms (a store-and-forward copy)."""
    return latency_us * 1e-3 + np.asarray(transfer_bytes, float) / (lanes * lane_bytes_per_s * efficiency) * 1e3


def kv_transfer_energy_j(transfer_bytes: ArrayLike, pj_per_bit: float) -> np.ndarray:
    """8 x bytes x pJ/bit, J."""
    return np.asarray(transfer_bytes, float) * 8.0 * pj_per_bit * 1e-12


def transfer_lanes(gpus_prefill: int, gpus_decode: int) -> int:
    """Lanes a transfer uses: one per GPU on the narrower side."""
    return int(min(gpus_prefill, gpus_decode))


def model_kv_bytes_per_token(profile: Profile) -> float:
    """KV bytes per token of the profile's model (all layers, one copy)."""
    return float(kv_bytes_per_token(profile.model))
