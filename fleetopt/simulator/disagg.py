"""A split (disaggregated) pool request by request: prefill instances, a KV transfer, then
decode instances.

* **prefill**: join-shortest-queue over the prefill instances, the queue measured in work
  (the router knows each prompt's length: queued prompts' prefill times plus what is left of
  the running batch; lowest index on ties), so with one prompt at a time the pool is the
  FCFS M/G/c queue the sizing assumes.  Each instance serves its FIFO queue one prompt at a
  time (in chunks, the sizing layer's S_p(p)) by default; with ``prefill_batch_tokens`` = B
  it takes the head and then the next waiting prompts while their tokens fit B (vLLM's
  max_num_batched_tokens), a batch's time being ``fleetopt.disagg.batch_prefill_ms`` and its
  power the prefill-only operating point of its tokens.  Measured (README): batching cuts
  the mean wait but lengthens the long prompts that share a batch, which raises the P99
  TTFT, so the sizing keeps the unbatched discipline.
* **KV transfer**: when a batch ends, each prompt's KV leaves through the instance's NICs,
  one transfer after another (a FIFO per prefill instance), taking T_kv(p) of
  ``fleetopt.disagg`` and 8 B(p) pJ/bit of energy.
* **decode**: a request arrives at the decode pool when its KV has arrived and joins the
  shortest queue there; the decode pool is ``fleetopt.simulator.core.simulate_pool`` with no
  prefill (pure decode steps from the same physics tables), so admission, paged KV and
  preemption behave as in an aggregated pool.
* **figures**: TTFT = first token on the decode instance - arrival (prefill wait + prefill +
  transfer + decode admission wait); TPOT = (finish - first token) / (O - 1).  Energy per
  phase is integrated over its measurement window (busy batches at their power, the rest of
  every instance's time at idle power); the decode window starts and ends later than the
  arrivals' by the prefill latency, so its energy and tokens are scaled to the arrivals'
  window length when the phases are added.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fleetopt.disagg import batch_prefill_ms, kv_link
from fleetopt.disagg.links import (
    kv_transfer_bytes,
    kv_transfer_energy_j,
    kv_transfer_ms,
    model_kv_bytes_per_token,
    transfer_lanes,
)
from fleetopt.disagg.prefill import prefill_busy_power_w, prefill_service_ms
from fleetopt.physics.kv import paged_limits
from fleetopt.problem import Problem
from fleetopt.simulator.core import PoolSpec, PoolStats, simulate_pool
from fleetopt.simulator.tables import step_tables
from fleetopt.topology import PoolChoice


@dataclass
class PrefillRun:
    """Per request: batch start, prefill end, KV arrival at the decode pool (ms), and the
    prefill instance; the phase's energy and busy time inside the window."""

    start_ms: np.ndarray
    done_ms: np.ndarray
    ready_ms: np.ndarray
    instance: np.ndarray
    energy_j: float
    busy_ms: float
    window_ms: float
    transfer_energy_j: float
    batches: int


def simulate_prefill(instances: int, arrivals_ms: np.ndarray, prompts: np.ndarray, alone_ms: np.ndarray,
                     alone_w: np.ndarray, batch_ms_of: Callable[[float], float],
                     batch_w_of: Callable[[float], float], budget_tokens: float, idle_w: float,
                     transfer_ms: np.ndarray, transfer_j: np.ndarray, warm: int) -> PrefillRun:
    """The prefill pool and its transfers (module docstring).  ``alone_ms``/``alone_w``:
    each request's prefill time and instance power when alone; ``batch_ms_of(tokens)`` and
    ``batch_w_of(tokens)`` for a batch of several prompts; requests < ``warm`` are warm-up."""
    n = len(arrivals_ms)
    start, done, ready = np.zeros(n), np.zeros(n), np.zeros(n)
    inst_of = np.zeros(n, np.int64)
    N = instances
    t_warm = float(arrivals_ms[warm]) if warm < n else float(arrivals_ms[-1])
    t_end = float(arrivals_ms[-1])
    queues: list[deque[int]] = [deque() for _ in range(N)]
    queued_ms = np.zeros(N)                  # prefill time of each instance's queued prompts
    busy_until = np.zeros(N)
    busy = [False] * N
    nic_free = [0.0] * N
    events: list = []
    seq = 0
    energy = busy_ms = xfer_j = 0.0
    batches = 0
    arr = arrivals_ms.tolist()
    p_l = prompts.tolist()
    a_ms = alone_ms.tolist()

    def overlap(a: float, b: float) -> float:
        return max(0.0, min(b, t_end) - max(a, t_warm))

    def start_batch(k: int, t: float) -> None:
        """Prefill instance k takes the prompts at the head of its queue while their tokens
        fit ``prefill_batch_tokens`` (one prompt at least) and runs them as one batch: the
        batch lasts min(batch step(tokens), the sum of the prompts alone) at the batch's
        power; its energy and busy time inside the window are counted."""
        nonlocal seq, energy, busy_ms, batches
        q = queues[k]
        if not q:
            return
        batch = [q.popleft()]
        tok = p_l[batch[0]]
        while q and tok + p_l[q[0]] <= budget_tokens:
            r = q.popleft()
            batch.append(r)
            tok += p_l[r]
        queued_ms[k] -= sum(a_ms[r] for r in batch)
        if len(batch) == 1:
            dur, pw = float(alone_ms[batch[0]]), float(alone_w[batch[0]])
        else:
            dur = min(batch_ms_of(tok), float(sum(alone_ms[r] for r in batch)))
            pw = batch_w_of(tok)
        for r in batch:
            start[r] = t
            inst_of[r] = k
        ov = overlap(t, t + dur)
        energy += pw * ov * 1e-3
        busy_ms += ov
        batches += 1
        busy[k] = True
        busy_until[k] = t + dur
        seq += 1
        heapq.heappush(events, (t + dur, seq, k, batch))

    i = 0
    while i < n or events:
        if events and (i >= n or events[0][0] <= arr[i]):
            t, _, k, batch = heapq.heappop(events)
            for r in batch:
                done[r] = t
                nic_free[k] = max(nic_free[k], t) + float(transfer_ms[r])
                ready[r] = nic_free[k]
                if t_warm <= ready[r] <= t_end:
                    xfer_j += float(transfer_j[r])
            busy[k] = False
            start_batch(k, t)
            continue
        t = arr[i]
        r = i
        i += 1
        k = int(np.argmin(np.maximum(busy_until - t, 0.0) + queued_ms))
        queued_ms[k] += a_ms[r]
        queues[k].append(r)
        if not busy[k]:
            start_batch(k, t)
    window = max(t_end - t_warm, 0.0)
    energy += idle_w * (N * window - busy_ms) * 1e-3
    return PrefillRun(start, done, ready, inst_of, energy, busy_ms, window, xfer_j, batches)


def _table_fn(xs: np.ndarray, ys: np.ndarray) -> Callable[[float], float]:
    """Linear interpolation in x (tokens) of a tabulated figure."""
    xl, yl = xs.tolist(), ys.tolist()

    def f(x: float) -> float:
        return float(np.interp(x, xl, yl))
    return f


def simulate_split(problem: Problem, choice: PoolChoice, arrivals_ms: np.ndarray, inp: np.ndarray,
                   out: np.ndarray, window: float, rows: tuple[dict, dict], warm_ms: float, host_w_per_gpu: float,
                   record: Callable[[int, float, float, int], None] | None = None,
                   prefill_batch_tokens: float | None = None) -> tuple[dict, PoolStats]:
    """One split range: its requests (arrival ms ascending, lengths) through the prefill pool,
    the link and the decode pool sized in ``rows`` (the analytical prefill and decode rows).
    Returns the range's simulated figures and a ``PoolStats`` whose energy and tokens are the
    three phases' on the arrivals' window (for the fleet's totals)."""
    pre_row, dec_row = rows
    assert choice.prefill_gpu is not None and choice.prefill_tp is not None
    pp = problem.profile(choice.prefill_gpu, choice.prefill_tp, choice.prefill_serving)
    dp = problem.profile(choice.gpu, choice.tp, choice.serving)
    gp, gd = (int(p.gpus_per_instance) for p in (pp, dp))
    link = kv_link(problem.pools.kv_link)
    n = len(arrivals_ms)
    warm = int(np.searchsorted(arrivals_ms, warm_ms))
    # prefill: exact times per distinct prompt; batches from a table over total tokens
    uniq, inv = np.unique(inp, return_inverse=True)
    alone_ms = prefill_service_ms(pp, uniq)[inv]
    alone_w = gp * (prefill_busy_power_w(pp, uniq)[inv] + host_w_per_gpu)
    budget = float(prefill_batch_tokens or 0.0)          # 0: one prompt per batch
    grid = np.unique(np.concatenate([np.geomspace(1.0, max(budget, 2.0), 48), [max(budget, 1.0)]]))
    g_ms = np.array([batch_prefill_ms(pp, [x]) for x in grid])
    g_w = gp * (prefill_busy_power_w(pp, grid) + host_w_per_gpu)
    kvb = model_kv_bytes_per_token(pp)
    byts = kv_transfer_bytes(inp, kvb)
    x_ms = kv_transfer_ms(byts, transfer_lanes(gp, gd), link.lane_bytes_per_s(pp.gpu), link.efficiency, link.latency_us)
    x_j = kv_transfer_energy_j(byts, link.energy_pj_per_bit(pp.gpu))
    n_p, n_d = int(pre_row["instances"]), int(dec_row["instances"])
    pr = simulate_prefill(n_p, arrivals_ms, inp, alone_ms, alone_w, _table_fn(grid, g_ms), _table_fn(grid, g_w),
                          budget, gp * (pp.idle_power_w() + host_w_per_gpu), x_ms, x_j, warm)
    # decode: arrivals when the KV is in
    order = np.argsort(pr.ready_ms, kind="stable")
    darr = pr.ready_ms[order]
    first, fin, d_inst = np.full(n, math.nan), np.full(n, math.nan), np.zeros(n, np.int64)

    def rec(rid: int, f: float, t: float, k: int) -> None:
        r = int(order[rid])
        first[r], fin[r], d_inst[r] = f, t, k
        if record is not None:
            record(r, f, t, k)

    slots = int(dec_row["slots"])
    adm = dec_row["admission"]
    cap, kv_seq = (paged_limits(problem.model, float(dp.kv_capacity_tokens())) if adm == "paged"
                   else (math.inf, 0.0))      # sliding-window layers hold at most their window
    idle_d = gd * (dp.idle_power_w() + host_w_per_gpu)
    spec = PoolSpec(n_d, slots, cap, adm, step_tables(dp, slots, window, 0.0, 0.0, host_w_per_gpu), idle_d, kv_seq)
    warm_d = int(np.searchsorted(darr, arrivals_ms[warm] if warm < n else arrivals_ms[-1]))
    st_d = simulate_pool(spec, darr.tolist(), inp[order].tolist(), out[order].tolist(), [0.0] * n, warm_d,
                         problem.slo.ttft_p99_ms, problem.slo.tpot_p99_ms, rec, prefilled=True)
    # per-request figures of the measured requests
    meas = np.arange(n) >= warm
    ttft = first - arrivals_ms
    tpot = np.where(out > 1, (fin - first) / np.maximum(out - 1, 1), 0.0)
    st = PoolStats()
    for h, v in ((st.ttft, ttft), (st.tpot, tpot), (st.e2e, fin - arrivals_ms), (st.wait, pr.start_ms - arrivals_ms)):
        h.buf.extend(v[meas].tolist())
    st.measured = int(meas.sum())
    st.completed = int(np.isfinite(fin).sum())
    tp_slo = problem.slo.tpot_p99_ms
    st.met_both = int((meas & (ttft <= problem.slo.ttft_p99_ms) & ((tpot <= tp_slo) if tp_slo else True)).sum())
    st.preemptions = st_d.preemptions
    scale = pr.window_ms / st_d.window_ms if st_d.window_ms > 0 else 0.0
    st.energy_j = pr.energy_j + pr.transfer_energy_j + st_d.energy_j * scale
    st.tokens = st_d.tokens * scale
    st.window_ms = pr.window_ms
    st.busy_slot_ms = st_d.busy_slot_ms * scale

    def q(x: np.ndarray, p: float) -> float:
        x = x[meas & np.isfinite(x)]
        return float(np.quantile(x, p)) if x.size else math.nan

    phases = {"prefill_instances": n_p, "decode_instances": n_d,
              "prefill_utilization": pr.busy_ms / (n_p * pr.window_ms) if pr.window_ms and n_p else 0.0,
              "decode_utilization": st_d.busy_slot_ms / (n_d * max(slots, 1) * st_d.window_ms)
              if st_d.window_ms and n_d else 0.0,
              "prefill_batches": pr.batches, "prefill_wait_mean_ms": float(np.mean((pr.start_ms - arrivals_ms)[meas]))
              if meas.any() else math.nan, "prefill_wait_p99_ms": q(pr.start_ms - arrivals_ms, 0.99),
              "prefill_p99_ms": q(pr.done_ms - pr.start_ms, 0.99),
              "kv_transfer_p99_ms": q(pr.ready_ms - pr.done_ms, 0.99),
              "decode_wait_p99_ms": q(first - pr.ready_ms, 0.99),
              "prefill_energy_j": pr.energy_j, "transfer_energy_j": pr.transfer_energy_j,
              "decode_energy_j": st_d.energy_j, "prefill_window_ms": pr.window_ms, "decode_window_ms": st_d.window_ms,
              "decode_tokens": st_d.tokens}
    return phases, st

