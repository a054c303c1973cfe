"""Energy accounting: tokens per joule, joules per token, watt-hours.

Scalars or numpy arrays (broadcast); a scalar in gives a Python float out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

J_PER_WH = 3600.0
"""Joules in one watt-hour."""


def _ratio(num: Any, den: Any, otherwise: float) -> Any:
    """num / den where den > 0, ``otherwise`` elsewhere; a float for scalars."""
    n, d = np.asarray(num, float), np.asarray(den, float)
    pos = d > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(pos, n / np.where(pos, d, 1.0), otherwise)
    return float(r) if r.ndim == 0 else r


def tokens_per_joule(tokens_per_s: Any, power_w: Any) -> Any:
    """Tokens per joule: tok/J = (tokens/s) / W; 0 where no power is drawn."""
    return _ratio(tokens_per_s, power_w, 0.0)


def energy_per_token_j(power_w: Any, tokens_per_s: Any) -> Any:
    """Joules per token: J/tok = W / (tokens/s); infinite where no token is produced."""
    return _ratio(power_w, tokens_per_s, float("inf"))


def wh_from_j(joules: float) -> float:
    """Watt-hours from joules: Wh = J / 3600."""
    return joules / J_PER_WH
