"""The 1/W law table and single operating points, for any mode (library side of
``fleetopt law`` and ``fleetopt estimate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleetopt.errors import FleetoptError
from fleetopt.physics.energy import wh_from_j

if TYPE_CHECKING:
    from fleetopt.profiles.base import Profile
    from fleetopt.profiles.point import Admission

DEFAULT_CONTEXTS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


def law_rows(profile: Profile, contexts: Sequence[int] = DEFAULT_CONTEXTS, output_tokens: int = 512,
             admission: Admission = "reserve") -> list[dict[str, Any]]:
    """One row per context window at saturation: ``n_max`` the sequences served (KV-limited and
    capped by max_num_seqs), ``kv_concurrency`` the KV cache's limit alone (vLLM's logged
    "maximum concurrency").  Physical mode: n_max sequences each of
    total length = window (prompt = window - output), prompts prefilled in the same steps.
    Paper mode: n_max at the paper's mean in-flight length window/2, decode only."""
    rows = []
    for ctx in contexts:
        if ctx <= 0:
            raise FleetoptError(f"contexts: every window must be > 0, got {ctx}")
        n, op = profile.saturation(ctx, output_tokens, admission)
        kv_n = profile.kv_concurrency(ctx, max(ctx - output_tokens, 0) + output_tokens / 2.0, admission)
        if op is None:
            rows.append({"context": ctx, "n_max": 0, "kv_concurrency": kv_n, "step_ms": float("nan"),
                         "decode_tokens_per_s": 0.0,
                         "power_per_gpu_w": float("nan"), "instance_power_w": float("nan"),
                         "tokens_per_joule": 0.0, "tok_per_w_paper": 0.0})
            continue
        rows.append({"context": ctx, "n_max": n, "kv_concurrency": kv_n, "step_ms": op.step_ms,
                     "decode_tokens_per_s": op.decode_tokens_per_s, "power_per_gpu_w": op.power_per_gpu_w,
                     "instance_power_w": op.instance_power_w, "tokens_per_joule": op.tokens_per_joule,
                     "tok_per_w_paper": op.tok_per_w_paper})
    return rows


def estimate(profile: Profile, batch: int, prompt_tokens: int, output_tokens: int) -> dict:
    """One operating point: ``batch`` sequences of ``prompt_tokens`` + ``output_tokens`` in
    steady state.  Energy per output token includes the prefill work mixed into the steps
    (as a power meter sees it); TTFT is the prefill of one prompt with no queueing.  Two
    operating points: sustained (``step_ms``, ``power_per_gpu_w``: prefill chunks mixed into
    the steps, what a loaded fleet sees) and pure decode (``decode_step_ms``,
    ``decode_power_per_gpu_w``: the same batch and mean context without prefill, what a
    decode-window measurement sees)."""
    for name, v in (("batch", batch), ("prompt-tokens", prompt_tokens), ("output-tokens", output_tokens)):
        if v <= 0:
            raise FleetoptError(f"{name} must be > 0, got {v}")
    op, e_tok = profile.query_point(batch, prompt_tokens, output_tokens)
    ttft = profile.prefill_ms(prompt_tokens)
    return {"mode": profile.mode, "model": profile.model.id, "gpu": profile.gpu.id, "tp": profile.tp,
            "batch": batch, "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
            "dp": profile.dp, "calibration": profile.calibration_label,
            "step_ms": op.step_ms, "decode_step_ms": op.decode_step_ms, "ttft_ms": ttft,
            "decode_tokens_per_s": op.decode_tokens_per_s, "power_per_gpu_w": op.power_per_gpu_w,
            "decode_power_per_gpu_w": op.decode_power_per_gpu_w,
            "instance_power_w": op.instance_power_w, "tokens_per_joule": 1.0 / e_tok,
            "energy_per_output_token_j": e_tok, "energy_per_query_wh": wh_from_j(e_tok * output_tokens),
            "freq_scale": op.freq_scale}
