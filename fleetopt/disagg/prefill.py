"""The prefill phase of a split pool: prefill-only instances as an M/G/c queue whose P99
TTFT includes the KV transfer (the mathematics in ``fleetopt.disagg``).

    S_p(p) = sum_k step(0 decodes, c_k prompt tokens, context done_k + c_k / 2)
    TTFT_99 = W_99(M/G/c; n_p, lambda, E[S_p], cv_p^2) + S_p(p_99) + T_kv(p_99)

with the waiting time's exponential tail P(W > t) = C exp(-decay t) (Kimura's, as
``fleetopt.queueing``), C = Erlang-C and decay = 2 (c / E[S] - lambda) / (1 + cv^2).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from fleetopt.disagg.links import (
    KvLink,
    kv_transfer_bytes,
    kv_transfer_energy_j,
    kv_transfer_ms,
    model_kv_bytes_per_token,
)
from fleetopt.disagg.phases import PREFILL, PhaseColumns, least_count, start_phase
from fleetopt.queueing import log_erlang_c
from fleetopt.sizing import Slo
from fleetopt.traffic import TrafficBatch

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fleetopt.profiles.base import Profile


PREFILL_TIME_MODEL = "steps"
"""How a prefill instance's time is priced: ``steps`` (default) sums the prefill-only steps
of the profile's step model (``operating_point`` with no decode batch: the same model that
prices an aggregated pool's prefill work inside its mixed steps, DVFS and power caps
included); ``prefill_ms`` uses the profile's separately fitted ``prefill_ms`` (what an
aggregated pool's TTFT reads) stretched by the cap.  A sensitivity switch for benchmarks."""


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
        free = profile.uncapped()
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


def size_prefill(profile: Profile, tb: TrafficBatch, total_rate: float, lo: ArrayLike, hi: ArrayLike, slo: Slo,
                 lanes: int, link: KvLink, host_w_per_gpu: float = 0.0,
                 usd_per_gpu_hour: float | None = None) -> PhaseColumns:
    """The prefill phase of the m ranges of ``tb`` on one profile, its transfers over
    ``lanes`` lanes of ``link`` (module docstring); ranges without traffic get 0 instances."""
    out, lo, hi, lam_s, act = start_phase(PREFILL, profile, tb, total_rate, lo, hi, usd_per_gpu_hour)
    if not act.size:
        return out
    m, err, gp = tb.m, out.error, out.gpus_per_instance
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

    def meets(v: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Whether pools ``i`` at ``v`` instances (the others at their current counts) meet
        the P99 TTFT."""
        nn = cur.copy()
        nn[i] = v
        lc, dec = wait_tail(nn, lam_ms, es, cv2)
        late = ttft_exceed(np.full(act.size, slo.ttft_p99_ms), lc, dec, own, pw, sg, act.size)
        return ~good[i] | (late[i] <= 1 - q)

    n = np.where(good, least_count(meets, n_util), 0.0)
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
