"""The event loop of one pool: arrivals, join-shortest-queue dispatch, continuous batching,
admission (reserve or paged KV, with preemption and recompute), energy.

Continuous batching without simulating every step: between two events an instance's batch
b is constant, so its step time s(b, held KV) is constant and every running sequence gains
one token per step.  Each instance keeps a virtual clock V (tokens produced per running
sequence since it started); a sequence admitted at V0 with O tokens to produce finishes
when V reaches V0 + O, so completions come off a heap in O(log b).  KV held by a paged
instance is sum(prompt - V0) + b V, so the moment it would overflow is known in O(1).

Prefill (chunked, mixed into the decode steps, as the sizing layer models it): a request's
prompt takes ``prefill_ms`` from admission, expressed as
max(prefill_ms / s, 1) steps in its virtual-clock budget (s the step when it is admitted),
the last of which emits its first token, then O - 1 decode steps;
the decode step times come from the same operating points as the sizing layer (the pool's
mean prefill load per step is mixed in).  Its first token comes when the instance's clock
passes those prefill steps (a per-instance heap of such marks, resolved exactly inside
``advance``), so a batch that grows during a prefill delays the first token, not the
decode.  TTFT = first token - arrival; TPOT = (finish - first token) / (O - 1).

Preemption (paged): when the held KV would exceed the capacity, the most recently admitted
sequence is evicted and re-queued at the front with its prompt extended by the tokens it
had produced (recompute), as vLLM does; the instance then admits nothing until one of its
sequences finishes.

Statistics stream into log-spaced histograms (``LogHist``): memory does not grow with the
number of requests.  Requests arriving during the warm-up are served but not counted;
energy and tokens are integrated over the measurement window [t_warm, t_end] (a request's
output tokens are credited pro rata to the part of its decode inside the window).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetopt.simulator.loghist import LogHist


@dataclass
class PoolSpec:
    """One pool as the simulator needs it (times in ms, powers in W per instance)."""

    instances: int
    slots: int
    """Sequences an instance runs at most (the sizing layer's TPOT-capped slots)."""
    kv_capacity_tokens: float
    """KV tokens an instance holds (paged admission); math.inf for reserve."""
    admission: str
    step_and_power: Callable[[int, float], tuple[float, float]]
    """step_and_power(batch, mean_held_kv_tokens) -> (step ms, W per busy instance)."""
    idle_w: float
    """Power of an instance with nothing to run, W."""
    kv_seq_tokens: float = 0.0
    """KV each running sequence holds beyond its tokens, in the same units (sliding-window
    layers keep their window): a batch of b leaves kv_capacity_tokens - b x kv_seq_tokens."""


@dataclass
class PoolStats:
    """What one pool's run measured: latency histograms (ms) over the measured requests,
    how many met both SLOs, completions, preemptions, energy (J), output tokens, busy slot
    time and the measurement window (ms)."""

    ttft: LogHist = field(default_factory=LogHist)
    tpot: LogHist = field(default_factory=LogHist)
    e2e: LogHist = field(default_factory=LogHist)
    wait: LogHist = field(default_factory=LogHist)
    measured: int = 0
    met_both: int = 0
    completed: int = 0
    preemptions: int = 0
    energy_j: float = 0.0
    tokens: float = 0.0
    busy_slot_ms: float = 0.0
    window_ms: float = 0.0


MAX_EVENTS_PER_REQUEST = 1000
"""Events the loop may process per request (a request causes a handful; preemptions add
a few more): past it the simulation stops with an error instead of running forever."""


def simulate_pool(spec: PoolSpec, arrivals_ms: Sequence[float], inp: Sequence[float], out: Sequence[float],
                  prefill_ms: Sequence[float], warm: int, ttft_slo_ms: float, tpot_slo_ms: float | None,
                  record: Callable[[int, float, float, int], None] | None = None,
                  service_ms: Sequence[float] | None = None, tick: Callable[[int], None] | None = None,
                  prefilled: bool = False) -> PoolStats:
    """Run one pool over the given requests (arrival times ascending, ms; lengths; prefill
    ms per request).  Requests with index < warm are warm-up.  ``record(rid, first_token_ms,
    finish_ms, instance)``, when given, is called as each request finishes (--trace-out).
    ``service_ms`` (reserve admission only): a fixed time each request holds its slot, from
    admission to its last token, whatever the batch (the published model's M/G/c servers:
    paper mode); the instance's step function then gives only its power.  ``tick(n)``,
    when given, is called with the number of arrivals taken since its last call (every
    65,536 arrivals and once at the end: a progress bar).  ``prefilled``: the requests come
    with their first token emitted elsewhere (a disaggregated decode pool: the prefill
    instance's last step made it), so it counts at admission and O - 1 steps follow."""
    n_req = len(arrivals_ms)
    st = PoolStats()
    if n_req == 0 or spec.instances <= 0:
        return st
    fixed = service_ms is not None
    if fixed and spec.admission == "paged":
        raise ValueError("fixed service times are simulated with reserve admission only")
    svc = [float(x) for x in service_ms] if service_ms is not None else []
    t_warm = arrivals_ms[warm] if warm < n_req else arrivals_ms[-1]
    t_end = arrivals_ms[-1]
    st.window_ms = max(t_end - t_warm, 0.0)
    N = spec.instances
    slots, cap, paged = spec.slots, spec.kv_capacity_tokens, spec.admission == "paged"
    kvs = spec.kv_seq_tokens
    sp_fn, idle_w = spec.step_and_power, spec.idle_w
    V = [0.0] * N              # virtual clock: tokens per running sequence
    T = [0.0] * N              # time of the last update
    B = [0] * N                # running sequences
    KV0 = [0.0] * N            # sum over running of (tokens held at admission - V at admission)
    STEP = [1.0] * N
    POW = [idle_w] * N
    VER = [0] * N
    running: list[list[tuple[float, int, int]]] = [[] for _ in range(N)]   # heap of (finish_V, order, rid)
    ftq: list[list[tuple[float, int, int]]] = [[] for _ in range(N)]       # heap of (first-token V, order, rid)
    stack: list[list[int]] = [[] for _ in range(N)]     # admission order (for LIFO eviction), lazy
    alive: dict[int, tuple[int, float, float, float, int]] = {}   # rid -> (instance, V0, held0, finish_V, order)
    queues: list[list[int]] = [[] for _ in range(N)]    # FIFO per instance: list used as deque via index
    qhead = [0] * N
    load: Any = [0] * N if N <= 32 else np.zeros(N, np.int64)   # running + queued, for join-shortest-queue
    argmin = (lambda: min(range(N), key=load.__getitem__)) if N <= 32 else (lambda: int(load.argmin()))
    blocked = [False] * N               # after a preemption: admit nothing until a sequence finishes
    # per-request state (lists, indexed by rid): remaining prompt/out after preemption
    p_in = [float(x) for x in inp]
    p_out = [float(x) for x in out]
    pre = [float(x) for x in prefill_ms]
    first_tok = [-1.0] * n_req
    admit_t = [-1.0] * n_req
    order_ctr = 0
    events: list[tuple[float, int, int, int]] = []   # (time, kind, instance, version); kind 0 = completion/overflow
    inf = math.inf
    heappush, heappop = heapq.heappush, heapq.heappop
    add_ttft, add_tpot, add_e2e = st.ttft.add, st.tpot.add, st.e2e.add

    def advance(k: int, t: float) -> None:
        """Bring instance k's clocks to time t: V += (t - T) / s while it runs (stamping the
        first tokens whose marks V passes, at T + (mark - V) x s), and the part of [T, t]
        inside the measurement window charged as energy (P x dt, idle power when empty) and
        busy slot time (b x dt)."""
        t_k = T[k]
        dt = t - t_k
        T[k] = t
        if dt <= 0:
            return
        b = B[k]
        if b:
            v_old, s_k = V[k], STEP[k]
            v_new = V[k] = v_old + dt / s_k
            q = ftq[k]
            while q and q[0][0] <= v_new:    # first tokens inside [t_k, t]: exact times on this segment
                v_ft, order, rid = heappop(q)
                a = alive.get(rid)
                if a is not None and a[4] == order and first_tok[rid] < 0:
                    first_tok[rid] = t_k + (v_ft - v_old) * s_k if v_ft > v_old else t_k
        if t <= t_warm or t_k >= t_end:      # outside the measurement window
            return
        lo = t_k if t_k > t_warm else t_warm
        hi = t if t < t_end else t_end
        w = hi - lo
        if b:
            st.energy_j += POW[k] * w * 1e-3
            st.busy_slot_ms += b * w
        else:
            st.energy_j += idle_w * w * 1e-3

    def reschedule(k: int, t: float) -> None:
        """Instance k's batch changed: its step and power at (b, mean held KV), and its next
        event: the earliest finish, t + (V_fin - V) x s, or (paged) the moment the held KV
        would reach the capacity, t + (cap - b x kv_seq - held) / b x s, whichever comes first; a new
        version makes the instance's older events stale."""
        VER[k] += 1
        b = B[k]
        if not b:
            STEP[k], POW[k] = 1.0, idle_w
            return
        held = KV0[k] + b * V[k]
        mean_kv = held / b
        s, POW[k] = sp_fn(b, mean_kv)
        if fixed:                  # the clock counts milliseconds: budgets are service times
            s = 1.0
        STEP[k] = s
        h = running[k]
        while h and h[0][2] not in alive:
            heappop(h)
        nxt = (h[0][0] - V[k]) * s if h else inf
        if paged and cap < inf and b > 1:
            t_over = max(cap - kvs * b - held, 0.0) / b * s
            if t_over < nxt:
                heappush(events, (t + t_over, 0, k, VER[k]))
                return
        heappush(events, (t + (nxt if nxt > 0.0 else 0.0), 0, k, VER[k]))

    def admit(k: int, t: float) -> None:
        """Admit instance k's queued requests in order while it has a free slot (and, paged,
        KV for the prompt); each gets a virtual-clock budget of max(prefill_ms / s, 1) + O - 1
        steps (the step that ends the prefill emits the first token; the O steps left after a
        recompute),
        or its fixed service time."""
        nonlocal order_ctr
        q = queues[k]
        if blocked[k]:
            return
        while qhead[k] < len(q) and B[k] < slots:
            rid = q[qhead[k]]
            held_new = p_in[rid]
            if paged and KV0[k] + B[k] * V[k] + held_new > cap - kvs * (B[k] + 1) and B[k] > 0:
                break
            qhead[k] += 1
            if admit_t[rid] < 0:
                admit_t[rid] = t
                if rid >= warm:
                    st.wait.add(t - arrivals_ms[rid])
            pending = first_tok[rid] < 0
            mark = -1.0                      # steps to the first token, when the clock must find it
            if fixed:
                budget = svc[rid]
                if pending:                  # the published model: first token after its prefill time
                    first_tok[rid] = t + pre[rid]
            elif prefilled and pending:      # first token made by the prefill instance: O - 1 steps
                first_tok[rid] = t
                budget = max(p_out[rid] - 1.0, 0.0)
            else:
                s = STEP[k] if B[k] else sp_fn(1, held_new)[0]
                # the step finishing the prefill (at least one) emits the first token; O - 1 follow
                if pending:
                    mark = max(pre[rid] / s, 1.0)
                budget = mark + p_out[rid] - 1.0 if pending else p_out[rid]
            order_ctr += 1
            v0 = V[k]
            fin = v0 + budget
            alive[rid] = (k, v0, held_new, fin, order_ctr)
            if mark >= 0.0:
                heappush(ftq[k], (v0 + mark, order_ctr, rid))
            heapq.heappush(running[k], (fin, order_ctr, rid))
            stack[k].append(rid)
            B[k] += 1
            KV0[k] += held_new - v0
        if qhead[k] > 1024 and qhead[k] * 2 > len(q):   # compact the FIFO
            del q[:qhead[k]]
            qhead[k] = 0

    def finish(k: int, t: float) -> None:
        """Complete instance k's sequences whose budget is spent by time t, recording TTFT,
        TPOT = (finish - first token) / (O - 1) and end-to-end latency for measured
        requests, and crediting their tokens inside the window."""
        h = running[k]
        # a sequence is done within rounding; on a long horizon the clock's own resolution
        # (ulp of t) is more tokens than 1e-9, and without it the event would recur forever
        tol = 1e-9 + 4.0 * math.ulp(t) / STEP[k]
        while h and (h[0][2] not in alive or h[0][0] <= V[k] * (1 + 1e-12) + tol):
            fin, _, rid = heapq.heappop(h)
            if rid not in alive:
                continue
            _, v0, held0, _, _ = alive.pop(rid)
            B[k] -= 1
            KV0[k] -= held0 - v0
            load[k] -= 1
            blocked[k] = False
            st.completed += 1
            if first_tok[rid] < 0:           # its prefill mark and its end fell on one event
                first_tok[rid] = t
            if record is not None:
                record(rid, first_tok[rid], t, k)
            ft = first_tok[rid]                  # tokens credited pro rata to the window
            if t > ft:
                ov = (t if t < t_end else t_end) - (ft if ft > t_warm else t_warm)
                if ov > 0:
                    st.tokens += out[rid] * ov / (t - ft)
            elif t_warm <= t <= t_end:
                st.tokens += out[rid]
            if rid >= warm:
                ft = first_tok[rid]
                ttft = ft - arrivals_ms[rid]
                o = out[rid]
                tpot = (t - ft) / (o - 1) if o > 1 else 0.0
                st.measured += 1
                add_ttft(ttft)
                add_tpot(tpot)
                add_e2e(t - arrivals_ms[rid])
                if ttft <= ttft_slo_ms and (tpot_slo_ms is None or tpot <= tpot_slo_ms):
                    st.met_both += 1

    def preempt(k: int) -> None:
        """Evict the most recently admitted running sequence; it recomputes later."""
        s = stack[k]
        while s:
            rid = s.pop()
            if rid in alive:
                _, v0, held0, fin, _ = alive.pop(rid)
                done = V[k] - v0
                B[k] -= 1
                KV0[k] -= held0 - v0
                produced = max(0.0, done - (pre[rid] / STEP[k] if done > 0 else 0.0))
                p_in[rid] = held0 + produced
                p_out[rid] = max(1.0, fin - V[k])
                queues[k].insert(qhead[k], rid)
                st.preemptions += 1
                blocked[k] = True
                return

    i = 0
    budget = MAX_EVENTS_PER_REQUEST * n_req + 1_000_000      # a bound, so a numerical stall cannot spin
    while i < n_req or events:
        budget -= 1
        if budget < 0:
            raise RuntimeError(f"simulation stalled: more than {MAX_EVENTS_PER_REQUEST} events per request "
                               f"(at t = {events[0][0] if events else t_end:.6g} ms)")
        t_arr = arrivals_ms[i] if i < n_req else inf
        if events and events[0][0] <= t_arr:
            t, _, k, ver = heapq.heappop(events)
            if ver != VER[k]:
                continue
            advance(k, t)
            finish(k, t)
            while paged and B[k] > 1 and KV0[k] + B[k] * V[k] >= (cap - kvs * B[k]) * (1 - 1e-9):
                preempt(k)
            admit(k, t)
            reschedule(k, t)
            continue
        t = t_arr
        rid = i
        i += 1
        if not i & 0xFFFF:
            for h in (st.ttft, st.tpot, st.e2e, st.wait):
                h.maybe_fold()
            if tick is not None:
                tick(0x10000)
        k = argmin()                                   # join the shortest queue (lowest index on ties)
        load[k] += 1
        advance(k, t)
        queues[k].append(rid)
        if B[k] < slots:
            admit(k, t)
            reschedule(k, t)
    if tick is not None:
        tick(n_req & 0xFFFF)
    # the tail: busy time after the last arrival is outside the window already
    return st
