"""`fleetopt sweep`: cases per second for a 1,000-case traffic-mix x demand grid (10 long-
context shares x 100 arrival rates on instances/azure-chat-longctx-mix.yaml), with 1 and 2
local workers, and the speed-up from reuse (routed traffic and pool shapes shared across
demand levels) against solving each case from scratch.

    python benchmarks/sweep_speed.py          # writes benchmarks/results/sweep_speed.md

Each run is a fresh command-line process (`python -m fleetopt sweep ... --format json`)
into an empty folder, so worker start-up and imports are included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARES = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6]


def spec(d: Path, n_rates: int) -> Path:
    rates = [round(25 * 1.06 ** k, 1) for k in range(n_rates)]
    axis = "\n".join(f"    - {{value: {s}, set: {{workload.distribution.components.long_documents.weight: {s}, "
                     f"workload.distribution.components.chat.weight: {round(1 - s, 4)}}}}}" for s in SHARES)
    p = d / "bench.yaml"
    p.write_text(f"schema_version: 1\nname: bench-{len(SHARES) * n_rates}\n"
                 f"base: {ROOT / 'instances' / 'azure-chat-longctx-mix.yaml'}\n"
                 f"grid:\n  long_context_share:\n{axis}\n  workload.arrival_rate: {rates}\n")
    return p


def run(spec_path: Path, workers: int, reuse: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        code = ("import sys, json; from fleetopt.sweeps import run_sweep; "
                f"print(json.dumps(run_sweep({str(spec_path)!r}, {out!r}, {workers}, reuse={reuse})))")
        t0 = time.perf_counter()
        res = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout)
        res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    from fleetopt.render import table

    from _results import publish

    rows = []
    with tempfile.TemporaryDirectory() as d:
        big, small = spec(Path(d), 100), None
        for workers in (1, 2):
            r = run(big, workers, True)
            rows.append({"cases": r["cases"], "workers": workers, "reuse": "yes", "failed": r["failed"],
                         "wall_s": r["wall_s"], "cases_per_s": r["cases"] / r["wall_s"]})
        small_dir = Path(d) / "small"
        small_dir.mkdir()
        small = spec(small_dir, 10)
        for reuse in (True, False):
            r = run(small, 1, reuse)
            rows.append({"cases": r["cases"], "workers": 1, "reuse": "yes" if reuse else "no", "failed": r["failed"],
                         "wall_s": r["wall_s"], "cases_per_s": r["cases"] / r["wall_s"]})
    text = table(rows, f"fleetopt sweep on {os.cpu_count()} cores (whole process, fresh output folder)")
    publish("sweep_speed", text)


if __name__ == "__main__":
    main()
