"""Physical-mode baselines quoted in the README: azure-conv-h100 with reserve vs paged
admission, one 16K pool vs 4K + 16K, and the TTFT-binding setting.

    python benchmarks/physical_baselines.py   # writes benchmarks/results/physical_baselines.md
"""

from __future__ import annotations

from pathlib import Path

import fleetopt
from fleetopt.render import table

from _results import publish

INST = Path(__file__).resolve().parents[1] / "instances" / "azure-conv-h100.yaml"
CASES = [("reserve", "16384:h100x8", ()), ("reserve", "4096:h100x8,16384:h100x8", ()),
         ("paged", "16384:h100x8", ()), ("paged", "4096:h100x8,16384:h100x8", ()),
         ("paged", "4096:h100x8,16384:h100x8", ("slo.tpot_p99_ms=30", "slo.ttft_p99_ms=600"))]


def main() -> None:
    rows = []
    for adm, topo, sets in CASES:
        inst = fleetopt.load_instance(INST, list(sets))
        r = fleetopt.evaluate(inst, topo, adm).to_dict()
        rows.append({"admission": adm, "topology": topo, "overrides": " ".join(sets) or "-",
                     "instances": r["fleet"]["instances"], "tokens_per_joule": r["fleet"]["tokens_per_joule"],
                     "pools": "; ".join(f"{p['instances']} inst {p['slots']} slots util {p['utilization']:.2f} "
                                        f"[{p['binding']}]" for p in r["pools"])})
    text = table(rows, "azure-conv-h100 (physical mode)")
    publish("physical_baselines", text)


if __name__ == "__main__":
    main()
