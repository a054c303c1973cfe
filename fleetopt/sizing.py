"""SLO sizing of one pool: how many instances a (length interval, GPU, TP, window,
admission) pool needs so that P99 TTFT and TPOT hold under a utilisation cap, and what
power and tokens it then produces.

Model (each choice named):
* the pool is an M/G/c queue whose servers are sequence slots: c = instances x slots;
* slots per instance = concurrency under the admission policy (reserve: whole window per
  sequence; paged: tokens held, capped by max_num_seqs), further capped by TPOT: the
  largest batch whose step time (chunked prefill of the pool's prompts mixed in) stays
  within the TPOT target;
* a request holds a slot for its prefill plus output_tokens steps, each as long as the batch
  then running makes it (the paper's model: its published service time at the slot cap);
* P99 TTFT = P99 queueing wait (Erlang-C in log space, Kimura's M/G/c tail) + prefill (P99
  prefill in physical mode, mean in paper mode, as published); a request waits only when
  every slot is busy, so the tail is taken with steps at the slot-capped batch;
* utilisation cap: the mean batch b* = lambda_inst E[S(b*)] at most b_u = max_utilization x
  slots, i.e. N >= lambda E[S(b_u)] / b_u (exact: E[S] rises with b);
* instances = the least N meeting TTFT, raised to that utilisation bound;
* power at the mean batch b*; outputs credited at the length served (``credit``: the paper's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.batching import bisect_int, cap_points, settled_batch, tpot_batch_cap
from fleetopt.errors import InfeasibleError
from fleetopt.queueing import wait_quantile_mgc
from fleetopt.traffic import PoolTraffic, TrafficBatch
from fleetopt.units import Num

if TYPE_CHECKING:
    from collections.abc import Callable

    from fleetopt.profiles.base import Profile
    from fleetopt.profiles.point import Admission

MAX_POOL_INSTANCES = 1_000_000
"""The most instances one pool may need (8 million GPUs at TP 8): beyond it the pool is
infeasible with a message, so no search runs without bound (e.g. on a vast arrival rate)."""


@dataclass(frozen=True)
class Slo:
    """The service-level objectives a pool is sized for: P99 time to first token, P99 time
    per output token (None: no TPOT target) and the utilisation cap."""

    ttft_p99_ms: float = 500.0
    tpot_p99_ms: float | None = None
    max_utilization: float = 0.85


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
    split: float = 1.0
    """The share of its length range's traffic this pool takes (below 1 in a mixed pool)."""

    @property
    def tokens_per_joule(self) -> float:
        """Output tokens per joule of IT energy: tokens_per_s / it_power_w (0 for an idle pool)."""
        return self.tokens_per_s / self.it_power_w if self.it_power_w > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The pool's row of a plan's pool table (power in kW, cost per hour)."""
        return {"lo_tokens": self.lo_tokens, "hi_tokens": self.hi_tokens, "gpu": self.gpu, "tp": self.tp,
                "admission": self.admission, "split": self.split, "instances": self.instances, "gpus": self.gpus,
                "arrival_rate": self.arrival_rate, "utilization": self.utilization, "batch": self.batch,
                "slots": self.slots, "kv_slots": self.kv_slots, "ttft_p99_ms": self.ttft_p99_ms,
                "tpot_p99_ms": self.tpot_p99_ms, "mean_service_ms": self.mean_service_ms,
                "power_per_gpu_w": self.power_per_gpu_w, "it_power_kw": self.it_power_w / 1e3,
                "tokens_per_s": self.tokens_per_s, "tokens_per_joule": self.tokens_per_joule,
                "cost_per_hour": self.usd_per_hour, "binding": ",".join(self.binding)}


def pool_rows(pools: Sequence[PoolSizing]) -> list[dict[str, Any]]:
    """Plan rows with one key set: when some pool is a phase of a split pool (its row has
    ``phase``), every row gets ``phase`` (``both`` for an aggregated pool) and the KV
    transfer figures."""
    rows = [p.as_dict() for p in pools]
    if any("phase" in r for r in rows):
        rows = [{**r, "phase": r.get("phase", "both"), "kv_transfer_ms": r.get("kv_transfer_ms", 0.0),
                 "kv_transfer_w": r.get("kv_transfer_w", 0.0)} for r in rows]
    return rows


@dataclass
class PoolColumns:
    """Many pools sized at once (arrays, one entry per pool; powers in W, rates per second).
    ``error`` holds, per pool, why no instance count meets the SLOs (None when sized)."""

    lo: np.ndarray
    hi: np.ndarray
    window: np.ndarray
    instances: np.ndarray
    arrival_rate: np.ndarray
    utilization: np.ndarray
    slots: np.ndarray
    batch: np.ndarray
    kv_slots: np.ndarray
    ttft_p99_ms: np.ndarray
    tpot_p99_ms: np.ndarray
    mean_service_ms: np.ndarray
    power_per_gpu_w: np.ndarray
    instance_power_w: np.ndarray
    peak_instance_power_w: np.ndarray
    tokens_per_s: np.ndarray
    ttft_binds: np.ndarray
    gpus_per_instance: int
    usd_per_instance_hour: float
    error: list[str | None]

    @property
    def it_power_w(self) -> np.ndarray:
        """IT power of each pool, W: instances x instance_power_w."""
        out: np.ndarray = self.instances * self.instance_power_w
        return out

    def row(self, k: int, gpu: str, tp: int, admission: str) -> PoolSizing:
        """Pool ``k`` as a ``PoolSizing`` (binding: ttft or utilization, plus tpot when the
        TPOT cap lowered the slots)."""
        n = int(self.instances[k])
        binding = ["ttft" if self.ttft_binds[k] else "utilization"]
        if self.slots[k] < self.kv_slots[k]:
            binding.append("tpot")
        if self.arrival_rate[k] <= 0:
            binding = []
        return PoolSizing(float(self.lo[k]), float(self.hi[k]), gpu, tp, admission, n, n * self.gpus_per_instance,
                          float(self.arrival_rate[k]), float(self.utilization[k]), int(self.slots[k]),
                          float(self.batch[k]), int(self.kv_slots[k]), float(self.ttft_p99_ms[k]),
                          float(self.tpot_p99_ms[k]), float(self.mean_service_ms[k]), float(self.power_per_gpu_w[k]),
                          float(self.instance_power_w[k]), float(self.peak_instance_power_w[k]),
                          float(self.it_power_w[k]), float(self.tokens_per_s[k]),
                          n * self.usd_per_instance_hour, binding)


@dataclass
class PoolShape:
    """What sizing a pool needs that does not depend on the arrival rate (per active pool):
    slots, step, service-time moments, prefill P99, peak power, errors.  Computed once per
    (traffic, profile) and reused across demand levels (``fleetopt sweep``)."""

    m: int
    lo: np.ndarray
    hi: np.ndarray
    window: np.ndarray
    act: np.ndarray
    kv_slots: np.ndarray
    slots: np.ndarray
    step_ms: np.ndarray
    pre_q: np.ndarray
    es: np.ndarray
    """Mean slot time with every step at the slot-capped batch (the queueing tail's), ms."""
    cv2: np.ndarray
    e_pre: np.ndarray
    """Mean prefill time of the pool's requests, ms."""
    e_out: np.ndarray
    """Mean output tokens of the pool's requests (steps a request holds its slot)."""
    b_util: np.ndarray
    """The utilisation-capped batch max_utilization x slots (at least 1)."""
    step_util_ms: np.ndarray
    """Step time at ``b_util``, ms (equal to ``step_ms`` in paper mode: fixed service times)."""
    mean_kv: np.ndarray
    pf_per_seq: np.ndarray
    pf_ctx: np.ndarray
    peak_gpu_w: np.ndarray
    good: np.ndarray
    err: list[str | None]
    gpus_per: int
    price: float


def pool_shapes(profile: Profile, tb: TrafficBatch, lo: Num, hi: Num, window: Num, slo: Slo,
                admission: Admission = "reserve",
                usd_per_gpu_hour: float | None = None) -> PoolShape:
    """The rate-independent half of ``size_pools``, per pool with traffic:

        slots_KV  = concurrency(window, E[held KV], admission)       (KV cache, max_num_seqs)
        slots     = the largest b <= slots_KV with step(b) <= TPOT target (``tpot_batch_cap``),
                    the pool's prefill mixed into each step in physical mode:
                    tokens/step = b x E[in] / E[out] at mean context E[in] / 2
        S         = prefill(in) + out x step                          (a request's slot time)
        E[S], E[S^2] from per-(pool, prompt length) sums (exact), cv^2 = E[S^2] / E[S]^2 - 1
        b_u       = max_utilization x slots, step_u = step(b_u)       (the utilisation cap's batch)
        pre_q     = max(prefill(P99 prompt), step(slots)) in physical mode (the step ending the
                    prefill emits the first token; at the full batch, as the wait), E[prefill] in paper mode
        P_peak    = per-GPU power at the slot-capped batch (the ``peak`` provisioning basis)

    A pool whose KV cache cannot hold one window-long sequence, whose TPOT target no
    batch meets, or whose prefill alone misses the TTFT target gets its reason in ``err``
    (a column that does not exist), never an exception."""
    m = tb.m
    lo, hi, window = (np.asarray(x, float) * np.ones(m) for x in (lo, hi, window))
    gpus_per = profile.gpus_per_instance
    price = profile.usd_per_instance_hour(usd_per_gpu_hour)
    err: list[str | None] = [None] * m
    act = np.flatnonzero(tb.share > 0)
    e = np.zeros(0)
    if not act.size:
        return PoolShape(m, lo, hi, window, act, e, e, e, e, e, e, e, e, e, e, e, e, e, e, np.zeros(0, bool), err,
                         gpus_per, price)
    gname = f"{profile.gpu.id}x{profile.tp}"

    def fail(mask: np.ndarray, msg: Callable[[int], str]) -> None:
        for k in act[mask]:
            if err[k] is None:
                err[k] = f"pool ({lo[k]:.0f}, {hi[k]:.0f}] on {gname}: " + msg(np.searchsorted(act, k))

    e_in, e_out, mean_kv = tb.e_in[act], tb.e_out[act], tb.mean_kv[act]
    kv_slots = np.asarray(profile.concurrency(window[act], mean_kv, admission), np.int64) * np.ones(act.size, np.int64)
    fail(kv_slots <= 0, lambda a: f"the KV cache cannot hold one {window[act[a]]:.0f}-token sequence")
    if profile.chunked_prefill:
        pf_per_seq, pf_ctx = e_in / e_out, e_in / 2.0
    else:
        pf_per_seq, pf_ctx = np.zeros(act.size), np.zeros(act.size)
    slots, step_ms = tpot_batch_cap(profile, kv_slots, mean_kv, pf_per_seq, pf_ctx, slo.tpot_p99_ms)
    slots = np.where(kv_slots <= 0, 0, slots)
    fail((slots == 0) & (kv_slots > 0), lambda a: (f"TPOT SLO unreachable, one sequence steps in "
                                                   f"{step_ms[a]:.1f} ms > {slo.tpot_p99_ms:.1f} ms"))
    share = tb.share[act]
    pre_u = np.asarray(profile.prefill_ms(tb.uniq_inp), float)
    if profile.chunked_prefill:
        # service = prefill(in) + out x step, step constant in a pool, so its moments come
        # from per-(pool, prompt length) sums: E[S] = E[pre] + s E[out],
        # E[S^2] = E[pre^2] + 2 s E[pre out] + s^2 E[out^2]  (exact, no per-point pass)
        pos = np.full(m, -1)
        pos[act] = np.arange(act.size)
        keep = pos[tb.pair_seg] >= 0
        sg, pre, pw, pwo = pos[tb.pair_seg[keep]], pre_u[tb.pair_inv[keep]], tb.pair_w[keep], tb.pair_wo[keep]
        e_pre, e_pre2 = np.bincount(sg, pw * pre, act.size), np.bincount(sg, pw * pre**2, act.size)
        e_pre_o = np.bincount(sg, pwo * pre, act.size)
        es = (e_pre + step_ms * tb.w_o[act]) / share
        es2 = (e_pre2 + 2.0 * step_ms * e_pre_o + step_ms**2 * tb.w_o2[act]) / share
        pre_q = np.asarray(profile.prefill_ms(tb.inp_q99[act]), float)
        mean_pre, mean_out = e_pre / share, tb.w_o[act] / share
    else:   # the published model: its service time per point (ragged over the active pools)
        pos = np.full(m, -1)
        pos[act] = np.arange(act.size)
        keep = pos[tb.seg] >= 0
        sg, i_, o_, w_ = pos[tb.seg[keep]], tb.inp[keep], tb.out[keep], tb.w[keep]
        pre = pre_u[tb.inv[keep]]
        svc = np.asarray(profile.service_ms(i_, o_, np.maximum(slots, 1)[sg]), float)
        pre_q = np.bincount(sg, w_ * pre, act.size) / share
        es = np.bincount(sg, w_ * svc, act.size) / share
        es2 = np.bincount(sg, w_ * svc**2, act.size) / share
        mean_pre, mean_out = es.copy(), np.zeros(act.size)         # fixed service times: no batch feedback
    cv2 = np.maximum(es2 / es**2 - 1.0, 0.0)
    b_util, step_util, peak = cap_points(profile, slots, step_ms, mean_kv, pf_per_seq, pf_ctx, slo.max_utilization)
    if profile.chunked_prefill:     # the first token ends a step (as the simulator has it): one at the full batch
        pre_q = np.maximum(pre_q, step_ms)
    fail(pre_q >= slo.ttft_p99_ms, lambda a: (f"TTFT SLO unreachable: a first token takes {pre_q[a]:.0f} ms > "
                                              f"{slo.ttft_p99_ms:.0f} ms (prefill, or a step at the TPOT cap)"))
    good = np.array([err[k] is None for k in act])
    return PoolShape(m, lo, hi, window, act, kv_slots, slots, step_ms, pre_q, es, cv2, mean_pre, mean_out, b_util,
                     step_util, mean_kv, pf_per_seq, pf_ctx, peak, good, err, gpus_per, price)


def size_shapes(profile: Profile, sh: PoolShape, tb: TrafficBatch, total_rate: float, slo: Slo,
                host_w_per_gpu: float = 0.0) -> PoolColumns:
    """The rate-dependent half of ``size_pools``: instance counts (TTFT and utilisation),
    utilisation, mean batch and power at the given arrival rate.  Per pool, with
    lambda = rate x share (req/ms), a = lambda E[S] the busy slots (erlangs) with every step
    at the slot-capped batch, a_u = lambda E[S(b_u)] with steps at b_u = max_utilization x slots:

        n_stable = floor(a / slots) + 1
        n_util   = ceil(a_u / b_u)
        n        = the least n >= max(n_stable, n_util) with W_99(n slots) + pre_q <= TTFT target
                   (doubled to a bound, then bisected; W_99: Kimura's M/G/c tail)
        batch    = b* = the fixed point of b = (lambda / n) (E[pre] + step(b) E[out]), step
                   affine between b_u and slots (below 0.95 b_u, one secant step with the step at b*)
        rho      = b* / slots
        P_gpu    = P(batch) for batch >= 1, else idle + batch x (P(1) - idle)
        P_inst   = gpus x (P_gpu + host W per GPU),  tokens/s = lambda x E[credited out] x 1e3

    A pool that would need more than ``MAX_POOL_INSTANCES`` gets an error instead."""
    m = sh.m
    lam_s = total_rate * tb.share
    z = np.zeros(m)
    cols = PoolColumns(sh.lo, sh.hi, sh.window, np.zeros(m, np.int64), lam_s, z.copy(), np.zeros(m, np.int64),
                       z.copy(), np.zeros(m, np.int64), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy(),
                       z.copy(), np.zeros(m, bool), sh.gpus_per, sh.price, list(sh.err))
    act, good = sh.act, sh.good
    if not act.size or total_rate <= 0:
        return cols
    slots, es, cv2, pre_q = sh.slots, sh.es, sh.cv2, sh.pre_q
    sl = np.maximum(slots, 1).astype(float)
    lam_ms = lam_s[act] / 1e3
    load = lam_ms * es                                                    # busy slots (erlangs)
    load_u = lam_ms * (sh.e_pre + sh.step_util_ms * sh.e_out)              # ... with steps at b_u

    def ttft(n: np.ndarray, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        """P99 TTFT of the pools ``idx`` at ``n`` instances: P99 wait + prefill, ms."""
        out: np.ndarray = wait_quantile_mgc(n * sl[idx], lam_ms[idx], es[idx], cv2[idx]) + pre_q[idx]
        return out

    n_lo = np.floor(load / sl) + 1                                        # least stable count
    n_util = np.ceil(load_u / sh.b_util - 1e-12)
    n = np.maximum(n_lo, n_util)
    good = good.copy()

    def too_many(mask: np.ndarray, why: str) -> None:
        """Pools that would need more than MAX_POOL_INSTANCES: errors, not endless searches."""
        for a in np.flatnonzero(mask & good):
            k = act[a]
            cols.error[k] = (f"pool ({sh.lo[k]:.0f}, {sh.hi[k]:.0f}] on {profile.gpu.id}x{profile.tp}: {why} "
                             f"more than {MAX_POOL_INSTANCES:,} instances at {lam_s[k]:.4g} req/s")
            good[a] = False

    too_many(n > MAX_POOL_INSTANCES, "the load alone needs")
    n = np.where(good, n, 1.0)
    late = np.flatnonzero(good & (ttft(n) > slo.ttft_p99_ms))
    if late.size:               # TTFT binds: double (to the bound), then bisect on the least n meeting it
        hi_n = n[late] * 2
        for _ in range(64):
            still = ttft(hi_n, late) > slo.ttft_p99_ms
            over = still & (hi_n > MAX_POOL_INSTANCES)
            if over.any():
                mask = np.zeros(act.size, bool)
                mask[late[over]] = True
                too_many(mask, "the TTFT SLO needs")
                late, hi_n, still = late[~over], hi_n[~over], still[~over]
            if not still.any():
                break
            hi_n = np.where(still, hi_n * 2, hi_n)
        # largest n with ttft > slo, plus one
        n[late] = bisect_int(lambda v, i: ttft(v.astype(float), late[i]) > slo.ttft_p99_ms, n[late], hi_n) + 1
    ttft_binds = (n > n_util) & good
    batch, es_mean, p_gpu = settled_batch(profile, lam_ms / n, slots, sh.b_util, sh.step_ms, sh.step_util_ms,
                                          sh.e_pre, sh.e_out, sh.mean_kv, sh.pf_per_seq, sh.pf_ctx)
    rho = batch / sl
    tok_s = lam_s[act] * tb.credit_mean[act]
    g = act[good]
    gp = sh.gpus_per
    for name, val in (("instances", n), ("utilization", rho), ("slots", slots), ("batch", batch),
                      ("kv_slots", sh.kv_slots), ("ttft_p99_ms", ttft(n)), ("tpot_p99_ms", sh.step_ms),
                      ("mean_service_ms", es_mean), ("power_per_gpu_w", p_gpu),
                      ("instance_power_w", gp * (p_gpu + host_w_per_gpu)),
                      ("peak_instance_power_w", gp * (sh.peak_gpu_w + host_w_per_gpu)), ("tokens_per_s", tok_s),
                      ("ttft_binds", ttft_binds)):
        arr = getattr(cols, name)
        arr[g] = np.asarray(val)[good].astype(arr.dtype)
    return cols


def size_pools(profile: Profile, tb: TrafficBatch, total_rate: float, lo: Num, hi: Num, window: Num, slo: Slo,
               admission: Admission = "reserve", host_w_per_gpu: float = 0.0,
               usd_per_gpu_hour: float | None = None) -> PoolColumns:
    """Size the m pools of ``tb`` on one profile at once (``pool_shapes`` then
    ``size_shapes``).  Pools with no traffic get 0 instances.  See the module docstring."""
    sh = pool_shapes(profile, tb, lo, hi, window, slo, admission, usd_per_gpu_hour)
    return size_shapes(profile, sh, tb, total_rate, slo, host_w_per_gpu)


def size_pool(profile: Profile, traffic: PoolTraffic, total_rate: float, lo: float, hi: float, window: int,
              slo: Slo, admission: Admission = "reserve", host_w_per_gpu: float = 0.0,
              usd_per_gpu_hour: float | None = None) -> PoolSizing:
    """Size one pool (``size_pools`` with one row); raises InfeasibleError naming the SLO
    that no instance count can meet."""
    cols = size_pools(profile, TrafficBatch.of([traffic]), total_rate, lo, hi, window, slo, admission,
                      host_w_per_gpu, usd_per_gpu_hour)
    if cols.error[0]:
        raise InfeasibleError(cols.error[0])
    return cols.row(0, profile.gpu.id, profile.tp, admission)
