"""SLO sizing of one pool: how many instances a (length interval, GPU, TP, window,
admission) pool needs so that P99 TTFT and TPOT hold under a utilisation cap, and what
power and tokens it then produces.

Model (each choice named):
* the pool is an M/G/c queue whose servers are sequence slots: c = instances x slots;
* slots per instance = concurrency under the admission policy (reserve: whole window per
  sequence; paged: tokens held, capped by max_num_seqs), further capped by TPOT: the
  largest batch whose step time (chunked prefill of the pool's prompts mixed in) stays
  within the TPOT target;
* a request holds a slot for its prefill plus output_tokens steps at the slot-capped batch;
* P99 TTFT = P99 queueing wait (Erlang-C in log space, Kimura's M/G/c tail) + prefill: the
  pool's P99 prefill in physical mode, the mean prefill in paper mode (as published);
* instances = the least N meeting TTFT, raised to ceil(load / (max_utilization x slots));
* power is taken at the mean batch (utilisation x slots); output tokens are credited at
  the length served (``credit`` overrides this for the paper's compress-and-route rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fleetopt import InfeasibleError
from fleetopt.queueing import wait_quantile_mgc


@dataclass(frozen=True)
class Slo:
    ttft_p99_ms: float = 500.0
    tpot_p99_ms: float | None = None
    max_utilization: float = 0.85


@dataclass(frozen=True)
class PoolTraffic:
    """Requests a pool serves: lengths as served (after any compression), weights as a share
    of all traffic, and the output tokens credited per request."""

    inp: np.ndarray
    out: np.ndarray
    w: np.ndarray
    credit: np.ndarray

    @property
    def share(self) -> float:
        return float(self.w.sum())


@dataclass
class PoolSizing:
    """The sized pool (figures per pool; powers in W, rates per second)."""

    lo_tokens: float
    hi_tokens: float
    gpu: str
    tp: int
    admission: str
    instances: int
    gpus: int
    arrival_rate: float
    utilization: float
    slots: int
    batch: float
    kv_slots: int
    ttft_p99_ms: float
    tpot_p99_ms: float
    mean_service_ms: float
    power_per_gpu_w: float
    instance_power_w: float
    peak_instance_power_w: float
    it_power_w: float
    tokens_per_s: float
    usd_per_hour: float
    binding: list[str] = field(default_factory=list)

    @property
    def tokens_per_joule(self) -> float:
        return self.tokens_per_s / self.it_power_w if self.it_power_w > 0 else 0.0

    def as_dict(self) -> dict:
        return {"lo_tokens": self.lo_tokens, "hi_tokens": self.hi_tokens, "gpu": self.gpu, "tp": self.tp,
                "admission": self.admission, "instances": self.instances, "gpus": self.gpus,
                "arrival_rate": self.arrival_rate, "utilization": self.utilization, "batch": self.batch,
                "slots": self.slots, "kv_slots": self.kv_slots, "ttft_p99_ms": self.ttft_p99_ms,
                "tpot_p99_ms": self.tpot_p99_ms, "mean_service_ms": self.mean_service_ms,
                "power_per_gpu_w": self.power_per_gpu_w, "it_power_kw": self.it_power_w / 1e3,
                "tokens_per_s": self.tokens_per_s, "tokens_per_joule": self.tokens_per_joule,
                "cost_per_hour": self.usd_per_hour, "binding": ",".join(self.binding)}


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    o = np.argsort(x)
    c = np.cumsum(w[o]) / w.sum()
    return float(x[o][min(np.searchsorted(c, q), len(c) - 1)])


def tpot_batch_cap(profile, kv_slots: int, mean_kv: float, pf_per_seq: float, pf_ctx: float,
                   tpot_ms: float | None) -> tuple[int, float]:
    """Largest batch <= kv_slots whose mean step (prefill mixed in) is within tpot_ms, and
    that step.  (0, step at 1) when even one sequence misses the target."""
    def step(b):
        return profile.operating_point(b, mean_kv, b * pf_per_seq, pf_ctx).step_ms

    s_top = step(kv_slots)
    if tpot_ms is None or s_top <= tpot_ms:
        return kv_slots, s_top
    if step(1) > tpot_ms:
        return 0, step(1)
    lo, hi = 1, kv_slots          # step(lo) <= tpot < step(hi); step rises with batch
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if step(mid) <= tpot_ms:
            lo = mid
        else:
            hi = mid
    return lo, step(lo)


def size_pool(profile, traffic: PoolTraffic, total_rate: float, lo: float, hi: float, window: int,
              slo: Slo, admission: str = "reserve", host_w_per_gpu: float = 0.0,
              usd_per_gpu_hour: float | None = None, prefill_all: np.ndarray | None = None) -> PoolSizing:
    """Size one pool; raises InfeasibleError naming the SLO that no instance count can meet."""
    gname = f"{profile.gpu.id}x{profile.tp}"
    share = traffic.share
    lam_s = total_rate * share
    gpus_per = getattr(profile, "gpus_per_instance", profile.tp)
    price = (profile.gpu.usd_per_gpu_hour if usd_per_gpu_hour is None else usd_per_gpu_hour) * gpus_per
    if hasattr(profile, "usd_per_hour"):
        price = profile.usd_per_hour
    if lam_s <= 0:
        return PoolSizing(lo, hi, profile.gpu.id, profile.tp, admission, 0, 0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0,
                          0.0, 0.0, 0.0, 0.0, 0.0, 0.0, [])
    w = traffic.w / share
    inp, out = traffic.inp, traffic.out
    e_in, e_out = float(w @ inp), float(w @ out)
    mean_kv = float(w @ (out * (inp + out / 2.0))) / e_out        # time-average tokens held
    kv_slots = profile.concurrency(window, mean_kv, admission)
    if kv_slots <= 0:
        raise InfeasibleError(f"pool ({lo:.0f}, {hi:.0f}] on {gname}: the KV cache cannot hold one {window}-token sequence")
    pf_per_seq, pf_ctx = e_in / e_out, e_in / 2.0
    if profile.mode != "physical":
        pf_per_seq, pf_ctx = 0.0, 0.0
    slots, step_ms = tpot_batch_cap(profile, kv_slots, mean_kv, pf_per_seq, pf_ctx, slo.tpot_p99_ms)
    if slots == 0:
        raise InfeasibleError(f"pool ({lo:.0f}, {hi:.0f}] on {gname}: TPOT SLO unreachable, one sequence "
                              f"steps in {step_ms:.1f} ms > {slo.tpot_p99_ms:.1f} ms")
    pre = profile.prefill_ms(inp) if prefill_all is None else prefill_all
    pre = np.asarray(pre, float)
    if profile.mode == "physical":
        svc = pre + out * step_ms
        pre_q = weighted_quantile(pre, w, 0.99)
    else:
        svc = np.asarray(profile.service_ms(inp, out, slots), float)
        pre_q = float(w @ pre)
    es = float(w @ svc)
    cv2 = max(float(w @ svc**2) / es**2 - 1.0, 0.0)
    if pre_q >= slo.ttft_p99_ms:
        raise InfeasibleError(f"pool ({lo:.0f}, {hi:.0f}] on {gname}: TTFT SLO unreachable, prefill alone takes "
                              f"{pre_q:.0f} ms > {slo.ttft_p99_ms:.0f} ms")
    lam_ms = lam_s / 1e3
    load = lam_ms * es                                        # busy slots (erlangs)

    def ttft(n: int) -> float:
        return wait_quantile_mgc(n * slots, lam_ms, es, cv2) + pre_q

    n_lo = max(1, math.floor(load / slots) + 1)
    if ttft(n_lo) <= slo.ttft_p99_ms:
        n_ttft = n_lo
    else:
        hi_n = n_lo * 2
        while ttft(hi_n) > slo.ttft_p99_ms:
            hi_n *= 2
        lo_n = n_lo
        while hi_n - lo_n > 1:
            mid = (lo_n + hi_n) // 2
            if ttft(mid) <= slo.ttft_p99_ms:
                hi_n = mid
            else:
                lo_n = mid
        n_ttft = hi_n
    n_util = math.ceil(load / (slo.max_utilization * slots) - 1e-12)
    n = max(n_ttft, n_util)
    binding = ["ttft" if n_ttft > n_util else "utilization"]
    if slots < kv_slots:
        binding.append("tpot")
    rho = load / (n * slots)
    batch = rho * slots
    op = profile.operating_point(max(batch, 1.0), mean_kv, max(batch, 1.0) * pf_per_seq, pf_ctx)
    if batch < 1.0:     # the instance idles part of the time
        p_gpu = profile.idle_power_w() + batch * (op.power_per_gpu_w - profile.idle_power_w())
    else:
        p_gpu = op.power_per_gpu_w
    peak = profile.operating_point(slots, mean_kv, slots * pf_per_seq, pf_ctx).power_per_gpu_w
    inst_w = gpus_per * (p_gpu + host_w_per_gpu)
    tok_s = lam_s * float(w @ traffic.credit)
    return PoolSizing(lo, hi, profile.gpu.id, profile.tp, admission, n, n * gpus_per, lam_s, rho, slots, batch,
                      kv_slots, ttft(n), step_ms, es, p_gpu, inst_w, gpus_per * (peak + host_w_per_gpu),
                      n * inst_w, tok_s, n * price, binding)
