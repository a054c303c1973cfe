"""Paper Table 3 (fleet tok/W at 1000 req/s, P99 TTFT 500 ms) under paper mode, beside the
published figures.  The paper instances size each pool from the published simulator's 3000
seeded draws of its sub-CDF (``workload.distribution.samples``); the ``quadrature`` columns
integrate the same CDFs exactly instead, and show how much of each row is sampling noise
(LMSYS homogeneous: a thin 16K-64K tail).

    python benchmarks/paper_table3.py        # writes benchmarks/results/paper_table3.md
"""

from __future__ import annotations

from pathlib import Path

from fleetopt.fleet import evaluate, parse_topology
from fleetopt.instance import load_instance
from fleetopt.render import table

from _results import publish

INST = Path(__file__).resolve().parents[1] / "instances"
ROWS = [  # instance, topology, compress gamma, published instances, kW, tok/W
    ("paper-azure-h100", "65536:h100x8", None, 141, 58.3, 5.58),
    ("paper-azure-h100", "4096:h100x8,65536:h100x8", None, 68, 32.0, 9.16),
    ("paper-azure-h100", "4096:h100x8,65536:h100x8", 2.0, 40, 23.1, 14.08),
    ("paper-azure-b200", "65536:b200x8", None, 47, 33.4, 9.74),
    ("paper-azure-b200", "4096:b200x8,65536:b200x8", None, 25, 19.1, 15.39),
    ("paper-azure-b200", "4096:b200x8,65536:b200x8", 2.0, 17, 13.7, 23.71),
    ("paper-lmsys-h100", "65536:h100x8", None, 69, 28.5, 4.77),
    ("paper-lmsys-h100", "1536:h100x8,65536:h100x8", None, 38, 16.4, 7.91),
    ("paper-lmsys-h100", "1536:h100x8,65536:h100x8", 2.0, 29, 12.9, 10.30),
]


def row(name, topo, gamma, extra=()):
    sets = [f"pools.compress.gamma={gamma}", "pools.compress.accounting=paper"] if gamma else []
    inst, base = load_instance(INST / f"{name}.yaml", sets + list(extra))
    return evaluate(inst, base, parse_topology(topo))["fleet"]


def main() -> None:
    out = []
    for name, topo, gamma, n, kw, tpw in ROWS:
        f = row(name, topo, gamma)
        q = row(name, topo, gamma, ["workload.distribution.samples=null"])
        out.append({"instance": name, "topology": topo + (f" gamma {gamma:g}" if gamma else ""),
                    "instances": f["instances"], "published_instances": n,
                    "kw_one_gpu_convention": f["it_power_kw"] / 8, "published_kw": kw,
                    "tok_per_w_paper": f["tok_per_w_paper"], "published_tok_per_w": tpw,
                    "tok_per_w_err_pct": 100 * (f["tok_per_w_paper"] / tpw - 1),
                    "quadrature_instances": q["instances"], "quadrature_tok_per_w": q["tok_per_w_paper"]})
    text = table(out, "Table 3 reproduction (paper mode)")
    publish("paper_table3", text)


if __name__ == "__main__":
    main()
