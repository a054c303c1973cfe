"""Workloads: a joint (input, output) length distribution as weighted support points, an
arrival rate, and the routing key pools are split on.

Every source becomes the same object, ``LengthDist`` (points sorted by routing key, weights
summing to 1), built by deterministic quadrature (no sampling, so no seed is needed; the
one exception is paper mode's optional reproduction of the published simulator's seeded
Monte-Carlo draws, ``fleetopt.profiles.paper_routing.paper_mc_lengths``):

* ``cdf``        the paper's total-token CDF knots, piecewise uniform between knots, split
                 into input/output by a fixed input share (0.8 in the paper);
* ``histogram``  joint cells ``[in_lo, in_hi, out_lo, out_hi, fraction]`` (inline or CSV);
* ``trace``      a CSV of requests (Azure columns by default, any columns mapped);
* ``lognormal``  independent lognormal input and output lengths;
* ``mixture``    named components blended with weights.

Routing keys: ``total`` (input + output: the paper's choice; an oracle, since no router
knows the output length in advance), ``input`` (what a router sees), or
``input_plus_max_output`` (input + the request's max-output budget, a safe upper bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fleetopt.errors import FleetoptError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

ROUTING_KEYS = ("total", "input", "input_plus_max_output")


def routing_keys(inp: np.ndarray, out: np.ndarray, routing_key: str,
                 max_output_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(key, output) per request under the routing key; with ``input_plus_max_output`` the
    output is capped at the budget the key assumes."""
    if routing_key == "total":
        return inp + out, out
    if routing_key == "input":
        return inp.copy(), out
    if routing_key == "input_plus_max_output":
        if not max_output_tokens:
            raise FleetoptError("workload.max_output_tokens: required with routing_key input_plus_max_output")
        return inp + max_output_tokens, np.minimum(out, max_output_tokens)
    raise FleetoptError(f"workload.routing_key: must be one of {', '.join(ROUTING_KEYS)}, got '{routing_key}'")


@dataclass(frozen=True)
class LengthDist:
    """Weighted (input, output) support points, sorted by routing key."""

    inp: np.ndarray
    out: np.ndarray
    w: np.ndarray
    key: np.ndarray

    @classmethod
    def build(cls, inp: ArrayLike, out: ArrayLike, w: ArrayLike, routing_key: str = "total",
              max_output_tokens: int | None = None) -> LengthDist:
        """Points (input, output, weight) with lengths below 1 raised to 1, zero weights
        dropped, weights normalised to sum 1 and the routing key computed."""
        i_a = np.maximum(np.asarray(inp, float), 1.0)
        o_a = np.maximum(np.asarray(out, float), 1.0)
        w_a = np.asarray(w, float)
        if w_a.sum() <= 0:
            raise FleetoptError("workload: the distribution has no mass")
        key, o_a = routing_keys(i_a, o_a, routing_key, max_output_tokens)
        order = np.lexsort((o_a, i_a, key))
        keep = w_a[order] > 0
        o = order[keep]
        return cls(i_a[o], o_a[o], w_a[o] / w_a[o].sum(), key[o])

    @property
    def mean_input(self) -> float:
        """E[input tokens] = sum_i w_i in_i."""
        return float(self.w @ self.inp)

    @property
    def mean_output(self) -> float:
        """E[output tokens] = sum_i w_i out_i."""
        return float(self.w @ self.out)

    @property
    def max_key(self) -> float:
        """The longest routing key."""
        return float(self.key[-1])

    def quantile_key(self, q: float) -> float:
        """The least routing key whose cumulative weight reaches ``q``."""
        c = np.cumsum(self.w)
        return float(self.key[min(int(np.searchsorted(c, q)), len(c) - 1)])

    def slice(self, lo: float, hi: float) -> slice:
        """Index range of points with lo < key <= hi (keys are sorted)."""
        return slice(int(np.searchsorted(self.key, lo, "right")), int(np.searchsorted(self.key, hi, "right")))


def scale_output(dist: LengthDist, factor: float, routing_key: str = "total",
                 max_output_tokens: int | None = None) -> LengthDist:
    """Test-time scaling: every request's output x ``factor``, input and weights unchanged,
    O' = factor x O (at least 1 token; capped again at ``max_output_tokens`` under the
    ``input_plus_max_output`` key); routing keys recomputed."""
    if not factor > 0:
        raise FleetoptError(f"workload.output_scale: must be > 0, got {factor}")
    if factor == 1.0:
        return dist
    return LengthDist.build(dist.inp, dist.out * factor, dist.w, routing_key, max_output_tokens)


def _grid(lo: float, hi: float, m: int) -> np.ndarray:
    """m midpoints of equal sub-intervals of [lo, hi)."""
    return lo + (np.arange(m) + 0.5) * (hi - lo) / m


def from_cdf(knots: Sequence[Sequence[float]], input_share: float = 0.8, per_bin: int = 64,
             routing_key: str = "total") -> LengthDist:
    """Total tokens piecewise uniform between CDF knots (starting from 0), split by a fixed
    input share: the paper's workload construction (note section 3)."""
    xs = [0.0] + [float(k) for k, _ in knots]
    cs = [0.0] + [float(c) for _, c in knots]
    if any(b < a for a, b in zip(cs, cs[1:])) or any(b <= a for a, b in zip(xs, xs[1:])):
        raise FleetoptError("workload.cdf: knots must have increasing tokens and non-decreasing fractions")
    tot, w = [], []
    for (x0, x1), (c0, c1) in zip(zip(xs, xs[1:]), zip(cs, cs[1:])):
        if c1 > c0:
            g = _grid(x0, x1, per_bin)
            tot.append(g)
            w.append(np.full(per_bin, (c1 - c0) / per_bin))
    total = np.concatenate(tot)
    inp = input_share * total
    return LengthDist.build(inp, total - inp, np.concatenate(w), routing_key)


def from_cells(cells: Sequence[Sequence[float]], per_dim: int = 4, routing_key: str = "total",
               max_output_tokens: int | None = None) -> LengthDist:
    """Joint histogram cells [in_lo, in_hi, out_lo, out_hi, fraction] -> per_dim^2 points
    per cell on a midpoint grid."""
    inp, out, w = [], [], []
    for c in cells:
        ilo, ihi, olo, ohi, f = (float(x) for x in c)
        gi, go = _grid(ilo, ihi, per_dim), _grid(olo, ohi, per_dim)
        grid_in, grid_out = np.meshgrid(gi, go, indexing="ij")
        inp.append(grid_in.ravel())
        out.append(grid_out.ravel())
        w.append(np.full(grid_in.size, f / grid_in.size))
    return LengthDist.build(np.concatenate(inp), np.concatenate(out), np.concatenate(w), routing_key, max_output_tokens)


def from_lognormal(input_median: float, input_sigma: float, output_median: float, output_sigma: float,
                   points: int = 48, routing_key: str = "total", max_tokens: float | None = None,
                   max_output_tokens: int | None = None) -> LengthDist:
    """Independent lognormal input and output lengths on a quantile grid (points^2 points)."""
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf((i + 0.5) / points) for i in range(points)])
    gi, go = input_median * np.exp(input_sigma * z), output_median * np.exp(output_sigma * z)
    if max_tokens:
        gi = np.minimum(gi, max_tokens)
    grid_in, grid_out = np.meshgrid(gi, go, indexing="ij")
    return LengthDist.build(grid_in.ravel(), grid_out.ravel(), np.full(grid_in.size, 1.0 / grid_in.size), routing_key,
                            max_output_tokens)


def histogram_cells(inp: np.ndarray, out: np.ndarray, in_edges: np.ndarray, out_edges: np.ndarray) -> list[list[float]]:
    """Joint histogram of a trace as [in_lo, in_hi, out_lo, out_hi, fraction] cells (non-empty
    only): the compact form instances carry instead of raw traces."""
    in_edges, out_edges = np.asarray(in_edges, float), np.asarray(out_edges, float)
    h, _, _ = np.histogram2d(inp, out, bins=[in_edges, out_edges])
    h = h / h.sum()
    return [[float(in_edges[i]), float(in_edges[i + 1]), float(out_edges[j]), float(out_edges[j + 1]),
             round(float(h[i, j]), 6)]
            for i in range(len(in_edges) - 1) for j in range(len(out_edges) - 1) if h[i, j] > 0]
