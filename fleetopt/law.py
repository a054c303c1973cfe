"""The 1/W law table and single operating points, for any mode (library side of
``fleetopt law`` and ``fleetopt estimate``)."""

from __future__ import annotations

from fleetopt import FleetoptError
from fleetopt.physics.energy import wh_from_j
from fleetopt.profile import Profile

DEFAULT_CONTEXTS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


def law_rows(profile: Profile, contexts=DEFAULT_CONTEXTS, output_tokens: int = 512,
             admission: str = "reserve") -> list[dict]:
    """One row per context window at saturation.  Physical mode: n_max sequences each of
    total length = window (prompt = window - output), prompts prefilled in the same steps.
    Paper mode: n_max at the paper's mean in-flight length window/2, decode only."""
    rows = []
    for ctx in contexts:
        if ctx <= 0:
            raise FleetoptError(f"contexts: every window must be > 0, got {ctx}")
        n, op = profile.saturation(ctx, output_tokens, admission)
        if op is None:
            rows.append({"context": ctx, "n_max": 0, "step_ms": float("nan"), "decode_tokens_per_s": 0.0,
                         "power_per_gpu_w": float("nan"), "instance_power_w": float("nan"),
                         "tokens_per_joule": 0.0, "tok_per_w_paper": 0.0})
            continue
        rows.append({"context": ctx, "n_max": n, "step_ms": op.step_ms,
                     "decode_tokens_per_s": op.decode_tokens_per_s, "power_per_gpu_w": op.power_per_gpu_w,
                     "instance_power_w": op.instance_power_w, "tokens_per_joule": op.tokens_per_joule,
                     "tok_per_w_paper": op.tok_per_w_paper})
    return rows


def estimate(profile: Profile, batch: int, prompt_tokens: int, output_tokens: int) -> dict:
    """One operating point: ``batch`` sequences of ``prompt_tokens`` + ``output_tokens`` in
    steady state.  Energy per output token includes the prefill work mixed into the steps
    (as a power meter sees it); TTFT is the prefill of one prompt with no queueing."""
    for name, v in (("batch", batch), ("prompt-tokens", prompt_tokens), ("output-tokens", output_tokens)):
        if v <= 0:
            raise FleetoptError(f"{name} must be > 0, got {v}")
    op, e_tok = profile.query_point(batch, prompt_tokens, output_tokens)
    ttft = profile.prefill_ms(prompt_tokens)
    return {"mode": profile.mode, "model": profile.model.id, "gpu": profile.gpu.id, "tp": profile.tp,
            "batch": batch, "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
            "step_ms": op.step_ms, "decode_step_ms": op.decode_step_ms, "ttft_ms": ttft,
            "decode_tokens_per_s": op.decode_tokens_per_s, "power_per_gpu_w": op.power_per_gpu_w,
            "instance_power_w": op.instance_power_w, "tokens_per_joule": 1.0 / e_tok,
            "energy_per_output_token_j": e_tok, "energy_per_query_wh": wh_from_j(e_tok * output_tokens),
            "freq_scale": op.freq_scale}
