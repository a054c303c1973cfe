"""Energy accounting: per output token, per query, tokens per joule."""

from __future__ import annotations


def tokens_per_joule(tokens_per_s: float, power_w: float) -> float:
    """Tokens per joule = tokens/s / W."""
    return tokens_per_s / power_w if power_w > 0 else 0.0


def energy_per_token_j(power_w: float, tokens_per_s: float) -> float:
    """Joules per token = W / (tokens/s)."""
    return power_w / tokens_per_s if tokens_per_s > 0 else float("inf")


def wh_from_j(joules: float) -> float:
    """1 Wh = 3600 J."""
    return joules / 3600.0
