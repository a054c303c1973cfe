"""Traces: a trace instance's own requests replayed (``--arrivals trace``), and every
simulated request written as one CSV row (``--trace-out``), atomically."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from fleetopt.atomic import clean_stale, os_error, temp_name
from fleetopt.errors import FleetoptError
from fleetopt.instance import TraceWorkload
from fleetopt.problem import Problem
from fleetopt.routing import clamp_to_window
from fleetopt.topology import PoolChoice, groups
from fleetopt.workload import routing_keys
from fleetopt.workload_files import read_trace, trace_rate


def replayed(problem: Problem, topology: Sequence[PoolChoice], requests: int, rate: float,
             seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per pool (arrival ms, input, output) from the instance's trace: its own timestamps
    (scaled in time to the instance's arrival rate when that differs from the trace's),
    the first ``requests`` requests, each routed by the instance's key (and, in a mixed
    range, to a member drawn by share with the seeded generator)."""
    inst = problem.instance
    d = inst.workload.distribution
    if not isinstance(d, TraceWorkload) or not d.time_column:
        raise FleetoptError("--arrivals trace: the instance's workload must be a trace with a time column")
    if problem.pools.compress is not None:
        raise FleetoptError("--arrivals trace: compress-and-route is simulated with Poisson arrivals only")
    inp, out, t = read_trace(problem.path(d.path), d.input_column, d.output_column, d.time_column)
    assert t is not None
    order = np.argsort(t, kind="stable")[:requests]
    inp, out, t = inp[order], out[order], t[order]
    own = inst.workload.arrival_rate == "trace" or len(t) < 2 or not math.isfinite(trace_rate(t))
    t_ms = (t - t[0]) * 1e3 * (1.0 if own else trace_rate(t) / rate)
    k_all, out = routing_keys(inp, out, inst.workload.routing_key, inst.workload.max_output_tokens)
    grp = groups(topology)
    uppers = np.array([up for up, _ in grp], float)
    pool = np.minimum(np.searchsorted(uppers, k_all, side="left"), len(uppers) - 1)
    member = np.zeros(len(k_all), int)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(len(topology) + 1)[-1])
    for g, (_, idx) in enumerate(grp):            # a mixed range: each request to a member at random, by share
        if len(idx) > 1:
            sel = np.flatnonzero(pool == g)
            member[sel] = rng.choice(len(idx), size=sel.size, p=[topology[k].share for k in idx])
    out_lists = []
    for g, (hi, idx) in enumerate(grp):
        for m in range(len(idx)):
            sel = (pool == g) & (member == m)
            i_, o_ = inp[sel].astype(float), out[sel].astype(float)
            if g == len(grp) - 1:            # the last pool takes longer requests, clamped as sized
                i_, o_ = clamp_to_window(i_, o_, hi)
            out_lists.append((t_ms[sel], np.maximum(i_, 1.0), np.maximum(o_, 1.0)))
    return out_lists


class TraceWriter:
    """--trace-out: one CSV row per finished request, written to a temporary file beside
    the target (permissions as any new file) and renamed into place when the simulation
    ends; on any failure (a full disk included) or interrupt the temporary is removed and
    the target left as it was.  Temporaries of killed runs are removed on the next."""

    def __init__(self, path: str | None, force: bool) -> None:
        self.path = Path(path) if path else None
        self.f: TextIO | None = None
        self.tmp: Path | None = None
        if self.path is None:
            return
        if self.path.is_dir():
            raise FleetoptError(f"--trace-out: '{self.path}' is a folder")
        if self.path.exists() and not force:
            raise FleetoptError(f"--trace-out: {self.path} exists; pass --force to replace it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(self.path.parent, self.path.name)
            self.tmp = self.path.parent / temp_name(self.path.name)
            self.f = open(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", newline="")
            self.w = csv.writer(self.f)
            self.w.writerow(["pool", "request", "instance", "arrival_ms", "first_token_ms", "finish_ms",
                             "input_tokens", "output_tokens", "warmup"])
        except OSError as e:
            self._discard()
            raise os_error(e, "--trace-out", self.path) from None

    def recorder(self, pool: int, arr: np.ndarray, inp: np.ndarray, out: np.ndarray,
                 warm: int) -> Callable[[int, float, float, int], None] | None:
        """The row writer of one pool's requests (None without --trace-out)."""
        if self.path is None:
            return None
        w = self.w.writerow

        def rec(rid: int, first: float, fin: float, k: int) -> None:
            w([pool, rid, k, f"{arr[rid]:.3f}", f"{first:.3f}", f"{fin:.3f}", int(inp[rid]), int(out[rid]),
               int(rid < warm)])
        return rec

    def _discard(self) -> None:
        """Close and remove the temporary."""
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None
        tmp = getattr(self, "tmp", None)
        if tmp is not None:
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:                 # a read-only folder: nothing was created there
                pass

    def close(self, ok: bool) -> None:
        """Rename the finished trace into place (``ok``) or remove it."""
        if self.path is None:
            return
        if not ok:
            self._discard()
            return
        assert self.f is not None and self.tmp is not None
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            self.f = None
            os.replace(self.tmp, self.path)
        except OSError as e:
            self._discard()
            raise os_error(e, "--trace-out", self.path) from None
