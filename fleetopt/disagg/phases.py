"""The phases of a split pool as sized figures (``PhaseSizing``, ``PhaseColumns``), and the
decode phase: sequences arrive with their prompt's KV built and hold a slot for O pure
decode steps,

    S_d = O x step(slots),   slots = min(KV concurrency, the largest batch meeting TPOT)

n_d the least count whose P99 slot wait is 0 (Erlang-C <= 1 %), raised to the utilisation
cap, so the decode pool adds nothing to the P99 TTFT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.batching import bisect_int, cap_points, settled_batch, tpot_batch_cap
from fleetopt.queueing import wait_quantile_mgc
from fleetopt.sizing import PoolSizing, Slo
from fleetopt.traffic import TrafficBatch

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fleetopt.profiles.base import Profile
    from fleetopt.profiles.point import Admission

PREFILL, DECODE = "prefill", "decode"


def phase_gpus(profile: Profile) -> int:
    """GPUs of one instance of the phase."""
    return int(profile.gpus_per_instance)


class PhaseSizing(PoolSizing):
    """One phase of a split pool as a plan reports it (figures as ``PoolSizing``; for the
    prefill phase ``ttft_p99_ms`` is the range's P99 TTFT, transfer included, and its power
    includes the link's)."""

    def __init__(self, *a: Any, phase: str, kv_transfer_ms: float = 0.0, kv_transfer_w: float = 0.0,
                 **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.phase, self.kv_transfer_ms, self.kv_transfer_w = phase, kv_transfer_ms, kv_transfer_w

    def as_dict(self) -> dict[str, Any]:
        """The row of a plan's pool table, with the phase and the KV transfer figures."""
        return {**super().as_dict(), "phase": self.phase, "kv_transfer_ms": self.kv_transfer_ms,
                "kv_transfer_w": self.kv_transfer_w}


@dataclass
class PhaseColumns:
    """One phase sized over m length ranges at once (arrays, one entry per range; powers
    in W, rates per second).  ``error`` holds, per range, why the phase cannot be sized."""

    phase: str
    lo: np.ndarray
    hi: np.ndarray
    arrival_rate: np.ndarray
    instances: np.ndarray
    utilization: np.ndarray
    slots: np.ndarray
    batch: np.ndarray
    kv_slots: np.ndarray
    ttft_p99_ms: np.ndarray
    tpot_p99_ms: np.ndarray
    kv_transfer_ms: np.ndarray
    mean_service_ms: np.ndarray
    power_per_gpu_w: np.ndarray
    instance_power_w: np.ndarray
    peak_instance_power_w: np.ndarray
    transfer_w: np.ndarray
    tokens_per_s: np.ndarray
    binds: np.ndarray
    """The SLO (TTFT, or the decode slot wait) needs more instances than the utilisation cap."""
    gpus_per_instance: int
    usd_per_instance_hour: float
    error: list

    @property
    def it_power_w(self) -> np.ndarray:
        """IT power of each pool, transfer included, W: n x P_instance + P_transfer."""
        out: np.ndarray = self.instances * self.instance_power_w + self.transfer_w
        return out

    @property
    def peak_it_power_w(self) -> np.ndarray:
        """IT power of each pool at its peak batch, transfer included, W."""
        out: np.ndarray = self.instances * self.peak_instance_power_w + self.transfer_w
        return out

    def row(self, k: int, gpu: str, tp: int, admission: str, ttft_total_ms: float | None = None) -> PhaseSizing:
        """Pool ``k`` as a ``PhaseSizing`` row (``admission`` ``-`` for a prefill pool; the
        TTFT of both phases and the transfer when ``ttft_total_ms`` is given)."""
        n = int(self.instances[k])
        if self.phase == PREFILL:
            binding = ["ttft" if self.binds[k] else "utilization"]
        else:
            binding = ["wait" if self.binds[k] else "utilization"]
            if self.slots[k] < self.kv_slots[k]:
                binding.append("tpot")
        if self.arrival_rate[k] <= 0:
            binding = []
        ttft = float(self.ttft_p99_ms[k]) if ttft_total_ms is None else ttft_total_ms
        return PhaseSizing(float(self.lo[k]), float(self.hi[k]), gpu, tp, admission, n, n * self.gpus_per_instance,
                           float(self.arrival_rate[k]), float(self.utilization[k]), int(self.slots[k]),
                           float(self.batch[k]), int(self.kv_slots[k]), ttft, float(self.tpot_p99_ms[k]),
                           float(self.mean_service_ms[k]), float(self.power_per_gpu_w[k]),
                           float(self.instance_power_w[k]), float(self.peak_instance_power_w[k]),
                           float(self.it_power_w[k]), float(self.tokens_per_s[k]), n * self.usd_per_instance_hour,
                           binding, phase=self.phase, kv_transfer_ms=float(self.kv_transfer_ms[k]),
                           kv_transfer_w=float(self.transfer_w[k]))


def empty_phase(phase: str, m: int, lo: np.ndarray, hi: np.ndarray, lam: np.ndarray, gpus: int, price: float,
           err: list[str | None]) -> PhaseColumns:
    """Phase columns of m pools none of which is sized (every figure 0, ``err`` the reasons)."""
    z = np.zeros(m)
    return PhaseColumns(phase, lo, hi, lam, np.zeros(m, np.int64), z.copy(), np.zeros(m, np.int64), z.copy(),
                        np.zeros(m, np.int64), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(),
                        z.copy(), z.copy(), np.zeros(m, bool), gpus, price, err)


def start_phase(phase: str, profile: Profile, tb: TrafficBatch, total_rate: float, lo: ArrayLike, hi: ArrayLike,
                usd_per_gpu_hour: float | None) -> tuple[PhaseColumns, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What sizing either phase starts from: the unsized columns (every figure 0, their
    ``error`` list to fill), lo and hi as arrays, each range's rate lambda x share, and the
    ranges with traffic (none when the total rate is 0)."""
    m = tb.m
    lo_a, hi_a = (np.asarray(x, float) * np.ones(m) for x in (lo, hi))
    lam_s = total_rate * tb.share
    err: list[str | None] = [None] * m
    out = empty_phase(phase, m, lo_a, hi_a, lam_s, phase_gpus(profile), profile.usd_per_instance_hour(usd_per_gpu_hour),
                      err)
    act = np.flatnonzero(tb.share > 0) if total_rate > 0 else np.zeros(0, np.int64)
    return out, lo_a, hi_a, lam_s, act


def least_count(ok: Callable[[np.ndarray, np.ndarray], np.ndarray], n0: np.ndarray) -> np.ndarray:
    """Per element the least integer n >= n0 with ok(n) true (ok monotone: false then
    true): double until true, then bisect.  ok takes (n, index array)."""
    n = n0.astype(float).copy()
    bad = np.flatnonzero(~ok(n, np.arange(n.size)))
    if not bad.size:
        return n
    hi = n[bad] * 2
    while True:
        still = ~ok(hi, bad)
        if not still.any():
            break
        hi = np.where(still, hi * 2, hi)
    n[bad] = bisect_int(lambda v, i: ~ok(v.astype(float), bad[i]), n[bad], hi) + 1
    return n


def size_decode(profile: Profile, tb: TrafficBatch, total_rate: float, lo: ArrayLike, hi: ArrayLike, window: ArrayLike,
                slo: Slo, admission: Admission = "paged",
                host_w_per_gpu: float = 0.0, usd_per_gpu_hour: float | None = None) -> PhaseColumns:
    """The decode phase of the m ranges of ``tb`` on one profile (module docstring):
    sequences arrive with their prompt's KV built and hold a slot for O pure decode steps.

        slots = the TPOT-capped batch of pure decode steps (no prefill mixed in)
        S_d   = O x step,  cv^2 = E[O^2] / E[O]^2 - 1
        n     = the least n >= max(floor(a / slots) + 1, ceil(a_u / b_u)) with
                P99 slot wait W_99 = 0 (Erlang-C <= 1 %): the decode pool adds nothing to
                the range's P99 TTFT (a = lambda S_d with steps at the slot-capped batch,
                a_u = lambda E[O] step(b_u) with b_u = u_max x slots, u_max the utilisation cap)
        P     = P(batch) per GPU at the mean batch b* (``fleetopt.batching.settled_batch``: steps
                follow the batch running), below one sequence idle + batch x (P(1) - idle)"""
    window = np.asarray(window, float) * np.ones(tb.m)
    out, lo, hi, lam_s, act = start_phase(DECODE, profile, tb, total_rate, lo, hi, usd_per_gpu_hour)
    if not act.size:
        return out
    err, gp = out.error, out.gpus_per_instance
    gname = f"{profile.gpu.id}x{profile.tp}"
    mean_kv = tb.mean_kv[act]
    kv_slots = np.asarray(profile.concurrency(window[act], mean_kv, admission), np.int64) * np.ones(act.size, np.int64)
    zero = np.zeros(act.size)
    slots, step = tpot_batch_cap(profile, kv_slots, mean_kv, zero, zero, slo.tpot_p99_ms)
    slots = np.where(kv_slots <= 0, 0, slots)
    for a, k in enumerate(act):
        if kv_slots[a] <= 0:
            err[k] = (f"pool ({lo[k]:.0f}, {hi[k]:.0f}] decode on {gname}: the KV cache cannot hold one "
                      f"{window[k]:.0f}-token sequence")
        elif slots[a] == 0:
            err[k] = (f"pool ({lo[k]:.0f}, {hi[k]:.0f}] decode on {gname}: TPOT SLO unreachable, one sequence "
                      f"steps in {step[a]:.1f} ms > {slo.tpot_p99_ms:.1f} ms")
    good = np.array([err[k] is None for k in act])
    share = tb.share[act]
    e_out, e_out2 = tb.w_o[act] / share, tb.w_o2[act] / share
    es = step * e_out                                                  # S_d = O x step
    cv2 = np.maximum(e_out2 / np.maximum(e_out, 1e-300) ** 2 - 1.0, 0.0)
    sl = np.maximum(slots, 1).astype(float)
    lam_ms = lam_s[act] / 1e3
    load = lam_ms * es

    def no_wait(n: np.ndarray, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Whether the decode pools ``idx`` at ``n`` instances have no P99 slot wait."""
        return ~good[idx] | (wait_quantile_mgc(n * sl[idx], lam_ms[idx], es[idx], cv2[idx]) <= 0.0)

    b_u, step_u, peak = cap_points(profile, slots, step, mean_kv, zero, zero, slo.max_utilization)
    n_util = np.maximum(np.floor(load / sl) + 1, np.ceil(lam_ms * e_out * step_u / b_u - 1e-12))
    n = np.where(good, least_count(no_wait, n_util), 0.0)
    batch, es_mean, p_gpu = settled_batch(profile, lam_ms / np.maximum(n, 1), slots, b_u, step, step_u, zero, e_out,
                                          mean_kv, zero, zero)
    batch = np.where(good, batch, 0.0)
    rho = batch / sl
    g = act[good]
    for name, val in (("instances", n), ("utilization", rho), ("slots", slots), ("batch", batch),
                      ("kv_slots", kv_slots), ("ttft_p99_ms", np.zeros(act.size)), ("tpot_p99_ms", step),
                      ("mean_service_ms", es_mean), ("power_per_gpu_w", p_gpu),
                      ("instance_power_w", gp * (p_gpu + host_w_per_gpu)),
                      ("peak_instance_power_w", gp * (peak + host_w_per_gpu)),
                      ("tokens_per_s", lam_s[act] * tb.credit_mean[act]), ("binds", n > n_util)):
        arr = getattr(out, name)
        arr[g] = np.asarray(val)[good].astype(arr.dtype)
    return out
