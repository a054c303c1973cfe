r"""Disaggregated prefill/decode (P/D) serving: link figures and KV transfer (``links``), the
prefill phase (``prefill``) and the decode phase (``phases``) of a split pool, and one split
range as ``fleetopt evaluate`` sizes it.

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

from typing import TYPE_CHECKING, Any

from fleetopt.catalog import Catalog
from fleetopt.disagg.links import KvLink, kv_link, transfer_lanes
from fleetopt.disagg.phases import DECODE, PREFILL, PhaseColumns, PhaseSizing, phase_gpus, size_decode
from fleetopt.disagg.prefill import batch_prefill_ms, size_prefill
from fleetopt.errors import FleetoptError, InfeasibleError
from fleetopt.topology import PoolChoice
from fleetopt.traffic import PoolTraffic, TrafficBatch

if TYPE_CHECKING:
    from fleetopt.problem import Problem
    from fleetopt.profiles.base import Profile

__all__ = ["DECODE", "PREFILL", "KvLink", "PhaseColumns", "PhaseSizing", "batch_prefill_ms", "check_disaggregation",
           "kv_link", "phase_serving", "size_decode", "size_prefill", "size_split_choice"]


def check_disaggregation(problem: Problem) -> None:
    """One-line errors for combinations the split model does not cover."""
    p = problem.pools
    if not problem.mode.splits_phases:
        raise FleetoptError("pools.disaggregation: split prefill/decode pools need mode physical "
                            "(the published model has no separate prefill physics)")
    if p.compress is not None:
        raise FleetoptError("pools.disaggregation: cannot be combined with pools.compress")
    if p.split_grid > 1:
        raise FleetoptError("pools.disaggregation: cannot be combined with pools.split_grid > 1 (mixed pools)")
    kv_link(p.kv_link)


def phase_serving(catalog: Catalog, gpu: str, cap_fraction: float) -> dict[str, Any] | None:
    """Serving overrides of a phase at ``cap_fraction`` of its GPU's TDP (None: as the instance)."""
    if cap_fraction >= 1.0:
        return None
    return {"power_cap_w": cap_fraction * catalog.gpu(gpu).tdp_w}


def size_split_choice(problem: Problem, choice: PoolChoice, traffic: PoolTraffic, rate: float, lo: float,
                      window: int) -> tuple[list[PhaseSizing], list[Profile]]:
    """The two phases of one split range (a ``PoolChoice`` with ``prefill_gpu``), sized on
    ``traffic`` at ``rate`` req/s: ([prefill row, decode row], [prefill profile, decode
    profile]).  Raises InfeasibleError naming the phase that no count can size."""
    check_disaggregation(problem)
    link = kv_link(problem.pools.kv_link)
    assert choice.prefill_gpu is not None and choice.prefill_tp is not None
    pp = problem.profile(choice.prefill_gpu, choice.prefill_tp, choice.prefill_serving)
    dp = problem.profile(choice.gpu, choice.tp, choice.serving)
    if link.same_gpu_type and pp.gpu.id != dp.gpu.id:
        raise FleetoptError(f"topology: link '{link.id}' needs both phases on one GPU type, got "
                            f"{pp.gpu.id} and {dp.gpu.id}")
    adm = choice.admission or problem.pools.admission[0]
    slo, host = problem.slo, problem.power.host_w_per_gpu
    tb = TrafficBatch.of([traffic])
    up = choice.upper
    pre = size_prefill(pp, tb, rate, lo, up, slo, transfer_lanes(phase_gpus(pp), phase_gpus(dp)), link, host,
                       problem.price(pp.gpu.id))
    dec = size_decode(dp, tb, rate, lo, up, window, slo, adm, host, problem.price(dp.gpu.id))
    for e in (pre.error[0], dec.error[0]):
        if e:
            raise InfeasibleError(e)
    ttft = float(pre.ttft_p99_ms[0] + dec.ttft_p99_ms[0])
    rows = [pre.row(0, pp.gpu.id, pp.tp, "-", ttft), dec.row(0, dp.gpu.id, dp.tp, adm, ttft)]
    return rows, [pp, dp]
