"""`fleetopt refine`: improvement over the MILP plan on every shipped instance, 100 trials
(TPE, seed 0, one worker, a fresh journal each), and the time it took.

    python benchmarks/refine_gain.py          # writes benchmarks/results/refine_gain.md
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 100


def rows() -> list[dict]:
    import fleetopt
    from fleetopt.problem import Problem
    from fleetopt.refinement import refine

    out = []
    for path in sorted((ROOT / "instances").glob("*.yaml")):
        inst = fleetopt.load_instance(path)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            r = refine(Problem.from_instance(inst), trials=TRIALS, storage=str(Path(d) / "s.journal"), seed=0)
            secs = time.perf_counter() - t0
        knobs = r["best"]["knobs"]
        caps = [round(v, 2) for k, v in knobs.items() if k.startswith("pcap")]
        out.append({"instance": inst.name, "milp_plan": r["milp"]["topology"],
                    "milp_tpj": r["milp"]["tokens_per_joule"], "refined_plan": r["best"]["topology"],
                    "refined_tpj": r["best"]["fleet"]["tokens_per_joule"], "improvement_pct": 100 * r["improvement"],
                    "power_cap_fracs": ",".join(map(str, caps)) or "-", "pruned": r["trials"]["pruned"],
                    "seconds": secs})
    return out


def main() -> None:
    from fleetopt.render import table

    from _results import publish

    text = table(rows(), f"refine: {TRIALS} trials per instance, TPE seed 0")
    publish("refine_gain", text)


if __name__ == "__main__":
    main()
