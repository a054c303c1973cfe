r"""Disaggregated prefill/decode (P/D) serving: link figures, KV transfer, and the SLO
sizing of a split pool.

A *split pool* serves one length range with two groups of instances: prefill instances
compute each prompt's KV cache and first token, the KV cache crosses a link, and decode
instances generate the rest.  Each group has its own GPU type, TP and power cap.

Model (each choice named; times in ms, rates per ms inside the queueing formulas):

* **prefill pool**: an M/G/c queue whose c = n_p servers are prefill instances, each
  prefilling one prompt at a time in chunks of ``serving.chunk_tokens``, so a prompt of p
  tokens holds an instance for

      S_p(p) = sum_k step(0 decodes, c_k prompt tokens, context done_k + c_k / 2)

  the prefill-only steps of the profile's step model (the model that prices an aggregated
  pool's prefill work inside its mixed steps), at the phase's own DVFS cap.  The simulator
  also batches waiting prompts up to the token budget; a batch never takes longer than its
  prompts one by one, so this sizing is conservative in work.
* **KV transfer**: B(p) = p x kv_bytes_per_token (one copy of the prompt's KV crosses the
  link; replicas a wide decode instance needs are made inside its node), over
  lanes = min(GPUs of the prefill instance, GPUs of the decode instance):

      T_kv(p) = latency + B(p) / (lanes x lane_bytes_per_s x efficiency)
      E_kv(p) = 8 B(p) x pJ/bit

* **TTFT** (the first token reaches the user when the decode instance starts streaming,
  as in vLLM's and Dynamo's disaggregated serving):

      TTFT_99 = W_99(M/G/c; n_p, lambda, E[S_p], cv_p^2) + S_p(p_99) + T_kv(p_99) + W_99^dec

  with Kimura's tail for W_99 (``fleetopt.queueing``) and p_99 the range's P99 prompt.
* **decode pool**: an M/G/c queue over sequence slots, like an aggregated pool
  (``fleetopt.sizing``) but with no prefill in its steps: slots per instance = min(KV
  concurrency under the admission policy, the largest batch whose pure decode step meets
  TPOT); a sequence holds a slot for S_d = O x step.  n_d is the least count whose P99 slot
  wait W_99^dec is 0 (Erlang-C <= 1 %), raised to the utilisation cap: the decode pool
  adds nothing to the P99 TTFT, so the two pools are sized independently.
* **power**: a prefill instance at utilisation rho_p = lambda E[S_p] / n_p draws
  rho_p P_busy + (1 - rho_p) P_idle per GPU, P_busy the time-weighted power of its
  prefill-only steps at the phase's cap; a decode instance draws the power of its mean
  batch, as an aggregated pool; the link draws lambda E[E_kv]; each GPU carries its host
  share.  Output tokens are credited on the decode side.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

import numpy as np

from fleetopt.errors import FleetoptError
from fleetopt.queueing import log_erlang_c, wait_quantile_mgc
from fleetopt.batching import bisect_int, tpot_batch_cap
from fleetopt.profiles import mode_of
from fleetopt.sizing import PoolSizing, Slo
from fleetopt.traffic import PoolTraffic, TrafficBatch

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fleetopt.catalog import Catalog
    from fleetopt.fleet import PoolChoice
    from fleetopt.instance import Instance
    from fleetopt.profiles import Profile

PREFILL, DECODE = "prefill", "decode"


# ---- links --------------------------------------------------------------------------------

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

    def lane_bytes_per_s(self, gpu) -> float:
        return (self.lane_gb_s if self.lane_gb_s is not None else gpu.link_gb_s) * 1e9

    def energy_pj_per_bit(self, gpu) -> float:
        return self.pj_per_bit if self.pj_per_bit is not None else float(getattr(gpu, "link_pj_per_bit", 5.5))


@lru_cache(maxsize=1)
def load_links() -> dict[str, KvLink]:
    """The packaged link catalog, by id."""
    from importlib import resources

    from fleetopt.files import parse_yaml

    data = parse_yaml(resources.files("fleetopt.catalog").joinpath("links.yaml").read_text())
    return {e["id"]: KvLink(e["id"], e.get("name", ""), e.get("lane_gb_s"), float(e["efficiency"]),
                            float(e["latency_us"]), e.get("pj_per_bit"), bool(e.get("same_gpu_type", False)))
            for e in data["links"]}


def kv_link(link_id: str) -> KvLink:
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
    from fleetopt.physics.kv import kv_bytes_per_token

    return float(kv_bytes_per_token(profile.model))


# ---- prefill-only instances: pure functions of a profile -------------------------------------

PREFILL_TIME_MODEL = "steps"
"""How a prefill instance's time is priced: ``steps`` (default) sums the prefill-only steps
of the profile's step model (``operating_point`` with no decode batch: the same model that
prices an aggregated pool's prefill work inside its mixed steps, DVFS and power caps
included); ``prefill_ms`` uses the profile's separately fitted ``prefill_ms`` (what an
aggregated pool's TTFT reads) stretched by the cap.  A sensitivity switch for benchmarks."""


def _gpus(profile: Profile) -> int:
    return int(profile.gpus_per_instance)


def prefill_chunks(profile: Profile, prompt_tokens: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(ms, per-GPU J) to prefill each prompt alone: chunks of ``chunk_tokens``, chunk k a
    prefill-only step of c_k tokens attending done_k + c_k / 2 tokens (arrays)."""
    p = np.asarray(prompt_tokens, float)
    chunk = float(getattr(profile, "chunk_tokens", 8192))
    ms, joules = np.zeros(p.shape), np.zeros(p.shape)
    for k in range(max(1, math.ceil(float(np.max(p, initial=1.0)) / chunk))):
        done = k * chunk
        c = np.clip(p - done, 0.0, chunk)
        on = c > 0
        if not on.any():
            break
        cc = np.where(on, c, 1.0)
        op = profile.operating_point(np.zeros(p.shape), np.zeros(p.shape), cc, done + cc / 2.0, decode=False)
        st = np.where(on, np.asarray(op.step_ms, float), 0.0)
        ms += st
        joules += st * 1e-3 * np.asarray(op.power_per_gpu_w, float)
    return ms, joules


def prefill_service_ms(profile: Profile, prompt_tokens: ArrayLike) -> np.ndarray:
    """S_p(p): the time a prompt holds a prefill instance, ms (``PREFILL_TIME_MODEL``)."""
    p = np.asarray(prompt_tokens, float)
    ms, _ = prefill_chunks(profile, p)
    if PREFILL_TIME_MODEL == "prefill_ms":
        free = dataclasses.replace(profile, power_cap_w=None) if getattr(profile, "power_cap_w", None) else profile
        ms = np.asarray(profile.prefill_ms(p), float) * ms / prefill_chunks(free, p)[0]
    return ms


def prefill_busy_power_w(profile: Profile, prompt_tokens: ArrayLike) -> np.ndarray:
    """Per-GPU power while prefilling a prompt alone (time-weighted over its chunks), W."""
    ms, joules = prefill_chunks(profile, prompt_tokens)
    return joules / np.maximum(ms, 1e-12) * 1e3


def batch_prefill_ms(profile: Profile, prompts: ArrayLike) -> float:
    """Time to prefill several prompts as one batch (the simulator's scheduler): priced as
    one prompt of their total length (each prompt's attention over the others' tokens is
    counted: conservative), never more than running them one by one, ms."""
    p = np.asarray(prompts, float)
    alone = prefill_service_ms(profile, p)
    if p.size == 1:
        return float(alone[0])
    return min(float(prefill_service_ms(profile, np.array([p.sum()]))[0]), float(alone.sum()))


# ---- the P99 TTFT of a prefill queue ----------------------------------------------------------

def wait_tail(servers: ArrayLike, lam_per_ms: ArrayLike, mean_ms: ArrayLike,
              cv2: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(log C, decay) of the M/G/c waiting time's tail P(W > t) = C exp(-decay t), the
    exponential tail Kimura's approximation takes (``fleetopt.queueing.wait_quantile_mgc``
    is its quantile): C = Erlang-C, decay = 2 (c / E[S] - lambda) / (1 + cv^2), per ms."""
    c, lam, es, cv = (np.asarray(x, float) for x in (servers, lam_per_ms, mean_ms, cv2))
    return np.asarray(log_erlang_c(c, lam * es), float), 2.0 * (c / es - lam) / (1.0 + cv)


def ttft_exceed(x_ms: ArrayLike, log_c: np.ndarray, decay: np.ndarray, own_ms: np.ndarray, w: np.ndarray,
                seg: np.ndarray, m: int) -> np.ndarray:
    """Per range, P(TTFT > x) for TTFT = W + own, W independent of a request's own time
    ``own`` (its prefill and transfer; one entry per (range, prompt) pair of weight w):
    sum_p w_p P(W > x - own_p) / sum_p w_p, with P(W > y) = 1 for y < 0."""
    y = np.asarray(x_ms, float)[seg] - own_ms
    p = np.where(y < 0, 1.0, np.exp(np.minimum(log_c[seg] - decay[seg] * np.maximum(y, 0.0), 0.0)))
    return np.bincount(seg, w * p, m) / np.maximum(np.bincount(seg, w, m), 1e-300)


def ttft_quantile(q: float, log_c: np.ndarray, decay: np.ndarray, own_ms: np.ndarray, w: np.ndarray,
                  seg: np.ndarray, m: int) -> np.ndarray:
    """Per range, the q-quantile of TTFT = W + own (``ttft_exceed``), by bisection to 1 us."""
    lo = np.zeros(m)
    hi = np.full(m, float(np.max(own_ms, initial=0.0)))
    hi += np.maximum(0.0, (np.maximum(log_c, np.log(1 - q)) - np.log(1 - q)) / np.maximum(decay, 1e-300))
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        over = ttft_exceed(mid, log_c, decay, own_ms, w, seg, m) > 1 - q
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
        if np.all(hi - lo < 1e-3):
            break
    return hi


# ---- sizing --------------------------------------------------------------------------------

class PhaseSizing(PoolSizing):
    """One phase of a split pool as a plan reports it (figures as ``PoolSizing``; for the
    prefill phase ``ttft_p99_ms`` is the range's P99 TTFT, transfer included, and its power
    includes the link's)."""

    def __init__(self, *a, phase: str, kv_transfer_ms: float = 0.0, kv_transfer_w: float = 0.0, **kw):
        super().__init__(*a, **kw)
        self.phase, self.kv_transfer_ms, self.kv_transfer_w = phase, kv_transfer_ms, kv_transfer_w

    def as_dict(self) -> dict:
        return {**super().as_dict(), "phase": self.phase, "kv_transfer_ms": self.kv_transfer_ms,
                "kv_transfer_w": self.kv_transfer_w}


def pool_rows(pools: list[PoolSizing]) -> list[dict]:
    """Plan rows with one key set: a plan with split pools gives every row ``phase``
    (``both`` for an aggregated pool) and the transfer figures."""
    rows = [p.as_dict() for p in pools]
    if any(isinstance(p, PhaseSizing) for p in pools):
        rows = [{**r, "phase": r.get("phase", "both"), "kv_transfer_ms": r.get("kv_transfer_ms", 0.0),
                 "kv_transfer_w": r.get("kv_transfer_w", 0.0)} for r in rows]
    return rows


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
        return self.instances * self.instance_power_w + self.transfer_w

    @property
    def peak_it_power_w(self) -> np.ndarray:
        return self.instances * self.peak_instance_power_w + self.transfer_w

    def row(self, k: int, gpu: str, tp: int, admission: str, ttft_total_ms: float | None = None) -> PhaseSizing:
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


def _empty(phase: str, m: int, lo: np.ndarray, hi: np.ndarray, lam: np.ndarray, gpus: int, price: float,
           err: list) -> PhaseColumns:
    z = np.zeros(m)
    return PhaseColumns(phase, lo, hi, lam, np.zeros(m, np.int64), z.copy(), np.zeros(m, np.int64), z.copy(),
                        np.zeros(m, np.int64), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(),
                        z.copy(), z.copy(), np.zeros(m, bool), gpus, price, err)


def _least_count(ok: Callable[[np.ndarray, np.ndarray], np.ndarray], n0: np.ndarray) -> np.ndarray:
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


def _price(profile: Profile, usd_per_gpu_hour: float | None) -> float:
    return (profile.gpu.usd_per_gpu_hour if usd_per_gpu_hour is None else usd_per_gpu_hour) * _gpus(profile)


def size_prefill(profile: Profile, tb: TrafficBatch, total_rate: float, lo: ArrayLike, hi: ArrayLike, slo: Slo,
                 lanes: int, link: KvLink, host_w_per_gpu: float = 0.0,
                 usd_per_gpu_hour: float | None = None) -> PhaseColumns:
    """The prefill phase of the m ranges of ``tb`` on one profile, its transfers over
    ``lanes`` lanes of ``link`` (module docstring); ranges without traffic get 0 instances."""
    m = tb.m
    lo, hi = (np.asarray(x, float) * np.ones(m) for x in (lo, hi))
    lam_s = total_rate * tb.share
    gp, price = _gpus(profile), _price(profile, usd_per_gpu_hour)
    err: list = [None] * m
    out = _empty(PREFILL, m, lo, hi, lam_s, gp, price, err)
    act = np.flatnonzero(tb.share > 0)
    if not act.size or total_rate <= 0:
        return out
    gname = f"{profile.gpu.id}x{profile.tp}"
    # per (range, prompt length) pair: service, busy power, KV bytes; moments per range
    svc_u = prefill_service_ms(profile, tb.uniq_inp)
    pow_u = prefill_busy_power_w(profile, tb.uniq_inp)
    pos = np.full(m, -1)
    pos[act] = np.arange(act.size)
    keep = pos[tb.pair_seg] >= 0
    sg, pw = pos[tb.pair_seg[keep]], tb.pair_w[keep]
    s, pwr = svc_u[tb.pair_inv[keep]], pow_u[tb.pair_inv[keep]]
    share = tb.share[act]
    es = np.bincount(sg, pw * s, act.size) / share
    es2 = np.bincount(sg, pw * s**2, act.size) / share
    p_busy = np.bincount(sg, pw * s * pwr, act.size) / share / es            # time-weighted busy power
    cv2 = np.maximum(es2 / es**2 - 1.0, 0.0)
    kvb = model_kv_bytes_per_token(profile)
    gpu = profile.gpu
    # per (range, prompt) pair: own time = prefill + transfer; P(TTFT > SLO) per range
    xfer_u = kv_transfer_ms(kv_transfer_bytes(tb.uniq_inp, kvb), lanes, link.lane_bytes_per_s(gpu), link.efficiency,
                            link.latency_us)
    own = s + xfer_u[tb.pair_inv[keep]]
    xfer_w = lam_s[act] * kv_transfer_energy_j(kv_transfer_bytes(tb.e_in[act], kvb), link.energy_pj_per_bit(gpu))
    q = 0.99
    x_q = xfer_u[np.searchsorted(tb.uniq_inp, tb.inp_q99[act])]
    alone_late = np.bincount(sg, pw * (own > slo.ttft_p99_ms), act.size) / share
    alone_q = ttft_quantile(q, np.full(act.size, -np.inf), np.ones(act.size), own, pw, sg, act.size)
    longest = np.zeros(m)
    np.maximum.at(longest, tb.seg, np.where(tb.w > 0, tb.inp, 0.0))
    cap_tokens = profile.kv_capacity_tokens()
    good = np.ones(act.size, bool)
    for a, k in enumerate(act):
        if longest[k] > cap_tokens:
            err[k] = (f"pool ({lo[k]:.0f}, {hi[k]:.0f}] prefill on {gname}: its KV cache ({cap_tokens} tokens) "
                      f"cannot hold a {longest[k]:.0f}-token prompt")
        elif alone_late[a] >= 1 - q:
            err[k] = (f"pool ({lo[k]:.0f}, {hi[k]:.0f}] prefill on {gname}: TTFT SLO unreachable, P99 prefill and KV "
                      f"transfer alone take {alone_q[a]:.0f} ms > {slo.ttft_p99_ms:.0f} ms")
        good[a] = err[k] is None
    lam_ms = lam_s[act] / 1e3
    load = lam_ms * es
    n_util = np.maximum(np.floor(load) + 1, np.ceil(load / slo.max_utilization - 1e-12))
    cur = n_util.copy()

    def meets(v, i):
        nn = cur.copy()
        nn[i] = v
        lc, dec = wait_tail(nn, lam_ms, es, cv2)
        late = ttft_exceed(np.full(act.size, slo.ttft_p99_ms), lc, dec, own, pw, sg, act.size)
        return ~good[i] | (late[i] <= 1 - q)

    n = np.where(good, _least_count(meets, n_util), 0.0)
    lc, dec = wait_tail(np.maximum(n, n_util), lam_ms, es, cv2)
    ttft_q = ttft_quantile(q, lc, dec, own, pw, sg, act.size)
    rho = np.where(good, load / np.maximum(n, 1), 0.0)
    idle = profile.idle_power_w()
    p_gpu = rho * p_busy + (1.0 - rho) * idle
    g = act[good]
    for name, val in (("instances", n), ("utilization", rho), ("slots", np.ones(act.size)), ("batch", rho),
                      ("kv_slots", np.ones(act.size)), ("ttft_p99_ms", ttft_q),
                      ("kv_transfer_ms", x_q), ("mean_service_ms", es), ("power_per_gpu_w", p_gpu),
                      ("instance_power_w", gp * (p_gpu + host_w_per_gpu)),
                      ("peak_instance_power_w", gp * (p_busy + host_w_per_gpu)), ("transfer_w", xfer_w),
                      ("binds", n > n_util)):
        arr = getattr(out, name)
        arr[g] = np.asarray(val)[good].astype(arr.dtype)
    return out


def size_decode(profile: Profile, tb: TrafficBatch, total_rate: float, lo: ArrayLike, hi: ArrayLike, window: ArrayLike,
                slo: Slo, admission: str = "paged",
                host_w_per_gpu: float = 0.0, usd_per_gpu_hour: float | None = None) -> PhaseColumns:
    """The decode phase of the m ranges of ``tb`` on one profile (module docstring):
    sequences arrive with their prompt's KV built and hold a slot for O pure decode steps."""
    m = tb.m
    lo, hi, window = (np.asarray(x, float) * np.ones(m) for x in (lo, hi, window))
    lam_s = total_rate * tb.share
    gp, price = _gpus(profile), _price(profile, usd_per_gpu_hour)
    err: list = [None] * m
    out = _empty(DECODE, m, lo, hi, lam_s, gp, price, err)
    act = np.flatnonzero(tb.share > 0)
    if not act.size or total_rate <= 0:
        return out
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

    def no_wait(n, idx=slice(None)):
        return ~good[idx] | (wait_quantile_mgc(n * sl[idx], lam_ms[idx], es[idx], cv2[idx]) <= 0.0)

    n_util = np.maximum(np.floor(load / sl) + 1, np.ceil(load / (slo.max_utilization * sl) - 1e-12))
    n = np.where(good, _least_count(no_wait, n_util), 0.0)
    rho = np.where(good, load / (np.maximum(n, 1) * sl), 0.0)
    batch = rho * sl
    b1 = np.maximum(batch, 1.0)
    p_op = np.asarray(profile.operating_point(b1, mean_kv, zero, zero, decode=False).power_per_gpu_w, float)
    idle = profile.idle_power_w()
    p_gpu = np.where(batch < 1.0, idle + batch * (p_op - idle), p_op)
    peak = np.asarray(profile.operating_point(sl, mean_kv, zero, zero, decode=False).power_per_gpu_w, float)
    g = act[good]
    for name, val in (("instances", n), ("utilization", rho), ("slots", slots), ("batch", batch),
                      ("kv_slots", kv_slots), ("ttft_p99_ms", np.zeros(act.size)), ("tpot_p99_ms", step),
                      ("mean_service_ms", es), ("power_per_gpu_w", p_gpu),
                      ("instance_power_w", gp * (p_gpu + host_w_per_gpu)),
                      ("peak_instance_power_w", gp * (peak + host_w_per_gpu)),
                      ("tokens_per_s", lam_s[act] * tb.credit_mean[act]), ("binds", n > n_util)):
        arr = getattr(out, name)
        arr[g] = np.asarray(val)[good].astype(arr.dtype)
    return out


# ---- one split range, as ``fleetopt evaluate`` sizes it ----------------------------------------

def check_disaggregation(inst: Instance) -> None:
    """One-line errors for combinations the split model does not cover."""
    p = inst.pools
    if not mode_of(inst.mode).splits_phases:
        raise FleetoptError("pools.disaggregation: split prefill/decode pools need mode physical "
                            "(the published model has no separate prefill physics)")
    if p.compress is not None:
        raise FleetoptError("pools.disaggregation: cannot be combined with pools.compress")
    if p.split_grid > 1:
        raise FleetoptError("pools.disaggregation: cannot be combined with pools.split_grid > 1 (mixed pools)")
    kv_link(p.kv_link)


def phase_serving(inst: Instance, catalog: Catalog, gpu: str, cap_fraction: float) -> dict | None:
    """Serving overrides of a phase at ``cap_fraction`` of its GPU's TDP (None: as the instance)."""
    if cap_fraction >= 1.0:
        return None
    return {"power_cap_w": cap_fraction * catalog.gpu(gpu).tdp_w}


def size_split_choice(inst: Instance, catalog: Catalog, choice: PoolChoice, traffic: PoolTraffic, rate: float,
                      lo: float, window: int, slo: Slo, host_w_per_gpu: float,
                      price_of: Callable[[str], float | None]) -> tuple[list[PhaseSizing], list[Profile]]:
    """The two phases of one split range (a ``PoolChoice`` with ``prefill_gpu``), sized on
    ``traffic`` at ``rate`` req/s: ([prefill row, decode row], [prefill profile, decode
    profile]).  Raises InfeasibleError naming the phase that no count can size."""
    from fleetopt.errors import InfeasibleError
    from fleetopt.fleet import make_pool_profile

    check_disaggregation(inst)
    link = kv_link(inst.pools.kv_link)
    pp = make_pool_profile(inst, choice.prefill_gpu, choice.prefill_tp, catalog, choice.prefill_serving)
    dp = make_pool_profile(inst, choice.gpu, choice.tp, catalog, choice.serving)
    if link.same_gpu_type and pp.gpu.id != dp.gpu.id:
        raise FleetoptError(f"topology: link '{link.id}' needs both phases on one GPU type, got "
                            f"{pp.gpu.id} and {dp.gpu.id}")
    adm = choice.admission or inst.pools.admission[0]
    tb = TrafficBatch.of([traffic])
    up = choice.upper
    pre = size_prefill(pp, tb, rate, lo, up, slo, transfer_lanes(_gpus(pp), _gpus(dp)), link, host_w_per_gpu,
                       price_of(pp.gpu.id))
    dec = size_decode(dp, tb, rate, lo, up, window, slo, adm, host_w_per_gpu, price_of(dp.gpu.id))
    for e in (pre.error[0], dec.error[0]):
        if e:
            raise InfeasibleError(e)
    ttft = float(pre.ttft_p99_ms[0] + dec.ttft_p99_ms[0])
    rows = [pre.row(0, pp.gpu.id, pp.tp, "-", ttft), dec.row(0, dp.gpu.id, dp.tp, adm, ttft)]
    return rows, [pp, dp]


def is_split(choice: PoolChoice) -> bool:
    return getattr(choice, "prefill_gpu", None) is not None
