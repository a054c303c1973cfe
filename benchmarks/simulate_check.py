"""The simulator: its speed, and simulated against analytical figures for the solved plan of
every shipped instance.

    python benchmarks/simulate_check.py       # writes benchmarks/results/simulate_check.md

Check: each plan is simulated for 10^5 requests or, when longer, 20 mean service times of
its slowest pool (the warm-up is 3 of them), so that every fleet reaches steady state.
``util_sim_over_analytical``: the least and largest ratio of a pool's simulated to its
analytical utilisation.  ``ttft_p99_analytical`` is the largest pool P99 the sizing
promised and ``ttft_p99_simulated`` the P99 over every request of the fleet (a pool serving
under 1 % of requests does not show in it); ``ttft_ana_over_sim_by_pool`` compares them pool
by pool (least and largest ratio).

Speed: 10^5 requests (seed 1) on the paper's two-pool Azure fleet and on the physical
Azure conversation fleet, one process (the event loop is single-threaded; pools are
independent, so a multi-pool fleet could use more cores).  Wall time includes routing,
sampling and tabulating the physics.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def speed_rows() -> list[dict]:
    import fleetopt
    from fleetopt.problem import Problem
    from fleetopt.simulator.run import simulate
    from fleetopt.topology import parse_topology

    rows = []
    for name, topo in (("paper-azure-h100", "4096:h100x8,65536:h100x8"), ("azure-conv-h100", "16384:h100x8"),
                       ("datacenter-20mw", "2048:b200x4,16384:b200x4")):
        problem = Problem.from_instance(fleetopt.load_instance(ROOT / "instances" / f"{name}.yaml"))
        best = None
        for _ in range(3):
            r = simulate(problem, parse_topology(topo), 100_000, seed=1)
            if best is None or r["sim"]["seconds"] < best["sim"]["seconds"]:
                best = r
        rows.append({"instance": name, "topology": topo, "instances": best["fleet"]["instances"],
                     "requests": best["sim"]["requests"], "seconds": best["sim"]["seconds"],
                     "requests_per_second": best["sim"]["requests_per_second"]})
    return rows


def check_rows() -> list[dict]:
    import fleetopt
    from fleetopt.problem import Problem
    from fleetopt.simulator.run import simulate
    from fleetopt.topology import parse_topology

    rows = []
    for path in sorted((ROOT / "instances").glob("*.yaml")):
        inst = fleetopt.load_instance(path)
        problem = Problem.from_instance(inst)
        plan = fleetopt.solve(problem).to_dict()
        t0 = time.perf_counter()
        e_s = max(p["mean_service_ms"] for p in plan["pools"] if p["instances"])   # >= 20 service times
        n = int(min(2_000_000, max(100_000, 20 * e_s / 1e3 * plan["fleet"]["arrival_rate"])))
        r = simulate(problem, parse_topology(plan["topology"]), n, seed=1)
        a, f = r["analytical"], r["fleet"]
        ana = {(p["lo_tokens"], p["hi_tokens"], p["gpu"], p["split"]): p["utilization"] for p in plan["pools"]}
        ratios = [p["utilization"] / ana[(p["lo_tokens"], p["hi_tokens"], p["gpu"], p["split"])]
                  for p in r["pools"] if p["requests"] and ana.get((p["lo_tokens"], p["hi_tokens"], p["gpu"], p["split"]))]
        ttft = [p["analytical_ttft_p99_ms"] / p["ttft_p99_ms"] for p in r["pools"]     # pool by pool
                if p["requests"] and p.get("ttft_p99_ms") and p.get("analytical_ttft_p99_ms")]
        rows.append({"instance": inst.name, "plan": plan["topology"], "requests": n,
                     "tpj_analytical": a["tokens_per_joule"],
                     "tpj_simulated": f["tokens_per_joule"], "tpj_dev_pct": 100 * r["deviation"]["tokens_per_joule"],
                     "ttft_p99_analytical": a["ttft_p99_ms"], "ttft_p99_simulated": f["ttft_p99_ms"],
                     "ttft_ana_over_sim_by_pool": f"{min(ttft):.2f}-{max(ttft):.2f}" if ttft else None,
                     "tpot_p99_slo": inst.slo.tpot_p99_ms, "tpot_p99_simulated": f["tpot_p99_ms"],
                     "slo_attainment": f["slo_attainment"], "preemptions": f["preemptions"],
                     "util_sim_over_analytical": f"{min(ratios):.3f}-{max(ratios):.3f}" if ratios else None,
                     "sim_s": time.perf_counter() - t0})
    return rows


def main() -> None:
    from fleetopt.render import table

    from _results import publish

    text = table(speed_rows(), "simulator speed, 10^5 requests, best of 3, one process") + "\n\n"
    text += table(check_rows(), "solved plans: analytical against simulated (seed 1; 10^5 requests or 20 mean service times)")
    publish("simulate_check", text)


if __name__ == "__main__":
    main()
