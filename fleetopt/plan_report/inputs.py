"""The inputs a plan depends on, as plain data (the ``inputs`` block of plan.json).

This is the one bridge from fleetopt's objects (the validated instance, its length
distribution) to the report, which otherwise reads only plain dicts: the SLOs, the power
cap and its provisioning basis, the workload and its routed length distribution, the
calibration in use, the fleetopt version, the instance file and its ``--set`` overrides,
and the whole instance as validated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fleetopt.loading import overrides_of, source_of
from fleetopt.physics.calibration import active_calibration, active_label, active_source, as_plain
from fleetopt.records import to_builtins
from fleetopt.version import __version__

if TYPE_CHECKING:
    from fleetopt.problem import Problem

ROUTED_BINS = 48
"""Log-spaced bins of the routed length histogram."""


def routed_lengths(key: Any, inp: Any, out: Any, w: Any, routing_key: str, bins: int = ROUTED_BINS) -> dict[str, Any]:
    """The routed length distribution as a histogram over log-spaced bins of the routing
    key: for each bin its share of requests and its share of tokens (input + output).
    ``key``, ``inp``, ``out``, ``w``: the distribution's support points and weights."""
    key, inp, out, w = (np.asarray(a, float) for a in (key, inp, out, w))
    lo, hi = max(float(key.min()), 1.0), max(float(key.max()), 2.0)
    if hi <= lo:
        hi = lo * 2.0
    edges = np.geomspace(lo, hi * (1 + 1e-9), bins + 1)
    idx = np.clip(np.searchsorted(edges, key, side="right") - 1, 0, bins - 1)
    req = np.bincount(idx, weights=w, minlength=bins)
    tok = np.bincount(idx, weights=w * (inp + out), minlength=bins)
    return {"routing_key": routing_key, "edges_tokens": [float(f"{e:.6g}") for e in edges],
            "requests": (req / max(req.sum(), 1e-300)).tolist(), "tokens": (tok / max(tok.sum(), 1e-300)).tolist(),
            "mean_input_tokens": float(w @ inp), "mean_output_tokens": float(w @ out)}


def plan_inputs(problem: Problem) -> dict[str, Any]:
    """The ``inputs`` block of a plan of ``problem``: plain data only (the instance as
    validated, the file it was read from and its overrides, the catalog files, the
    calibration in use, the fleetopt version, and the routed length histogram)."""
    inst = problem.instance
    source, _ = source_of(inst)
    dist = problem.dist
    d = to_builtins(inst)
    wl = inst.workload
    p = inst.power
    return {
        "fleetopt_version": __version__,
        "calibration": {"label": active_label(), "source": active_source(),
                        "coefficients": as_plain(active_calibration())},
        "instance_file": source if source and source != "-" else None,
        "overrides": overrides_of(inst),
        "catalog_files": list(problem.catalog.files),
        "model": inst.model, "mode": inst.mode, "objective": inst.objective,
        "slo": d["slo"],
        "power": {"facility_cap_mw": p.facility_cap_mw, "provisioning_basis": p.provisioning, "pue": p.pue,
                  "host_w_per_node": p.host_w_per_node},
        "workload": {"arrival_rate": wl.arrival_rate if isinstance(wl.arrival_rate, str) else float(wl.arrival_rate),
                     "routing_key": wl.routing_key, "distribution": wl.distribution.type,
                     "output_scale": wl.output_scale,
                     "routed_lengths": routed_lengths(dist.key, dist.inp, dist.out, dist.w, wl.routing_key)},
        "gpus": d["gpus"],
        "instance": d,
    }
