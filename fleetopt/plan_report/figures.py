"""The plan report's plots, one function per plot.

Each function takes the plan's result dict (and the ``inputs`` block where it needs it)
and returns a matplotlib Figure, or None when the plot does not apply (no verification,
no refinement).  GPUs have the same colour in every plot and run
(``fleetopt.plan_report.colours``); every axis names its quantity and unit.  matplotlib
is imported here only, when a report is written.
"""

from __future__ import annotations

from typing import Any

from fleetopt.plan_report.colours import gpu_colour

PLAN_COLOUR = "#1f3b73"
BASELINE_COLOUR = "#a6a6a6"
CAP_COLOUR = "#c0392b"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def power_unit_kw(kw: float) -> tuple[float, str]:
    """(kW per unit, unit) a power of ``kw`` kilowatts reads best in: kW below 1 MW, else MW."""
    return (1e3, "MW") if abs(kw) >= 1e3 else (1.0, "kW")


def ranges(pools: list[dict]) -> list[dict]:
    """The plan's length ranges in order, each with its pool rows (a mixed range's members,
    a split range's prefill and decode rows): {lo, hi, rows}."""
    out: list[dict] = []
    for p in pools:
        lo, hi = float(p["lo_tokens"]), float(p["hi_tokens"])
        if out and out[-1]["lo"] == lo and out[-1]["hi"] == hi:
            out[-1]["rows"].append(p)
        else:
            out.append({"lo": lo, "hi": hi, "rows": [p]})
    return out


def range_label(r: dict) -> str:
    """``0-640 tok`` and the configs serving it, e.g. ``gb200x2`` or ``pd h100x8/b200x2``."""
    rows = r["rows"]
    if any(p.get("phase") in ("prefill", "decode") for p in rows):
        pre = [p for p in rows if p.get("phase") == "prefill"]
        dec = [p for p in rows if p.get("phase") == "decode"]
        cfg = "pd " + "/".join(f"{p['gpu']}x{p['tp']}" for p in pre[:1] + dec[:1])
    else:
        cfg = " + ".join(f"{p['gpu']}x{p['tp']}" + (f" @{p['split']:.2g}" if p.get("split", 1.0) != 1.0 else "")
                         for p in rows)
    return f"{r['lo']:.0f}-{r['hi']:.0f} tok\n{cfg}"


def shares(result: dict) -> list[dict]:
    """Per range: its share of the requests (arrival rate) and of the output tokens
    (tokens/s credited), from the sized pools (a split range's requests counted once)."""
    f = result["fleet"]
    rate, tok = float(f.get("arrival_rate") or 0.0), float(f.get("tokens_per_s") or 0.0)
    out = []
    for r in ranges(result["pools"]):
        lam = sum(float(p.get("arrival_rate") or 0.0) for p in r["rows"] if p.get("phase") != "decode")
        ts = sum(float(p.get("tokens_per_s") or 0.0) for p in r["rows"])
        out.append({**r, "requests": lam / rate if rate else 0.0, "tokens": ts / tok if tok else 0.0})
    return out


def fleet_composition(result: dict, inputs: dict | None = None) -> Any:
    """GPUs per pool stacked by GPU type (prefill hatched in split pools), beside the
    fleet's GPUs by type."""
    plt = _plt()
    rs = ranges(result["pools"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [max(len(rs), 2), 2]})
    totals: dict[str, int] = {}
    seen: set[str] = set()
    for i, r in enumerate(rs):
        bottom = 0
        for p in r["rows"]:
            g, n = str(p["gpu"]), int(p.get("gpus") or 0)
            totals[g] = totals.get(g, 0) + n
            label = g if g not in seen else None
            seen.add(g)
            ax.bar(i, n, bottom=bottom, color=gpu_colour(g), edgecolor="white", label=label,
                   hatch="//" if p.get("phase") == "prefill" else None)
            if n and len(r["rows"]) > 1:
                ax.text(i, bottom + n / 2, f"{n}", ha="center", va="center", fontsize=8, color="white",
                        fontweight="bold")
            bottom += n
        ax.text(i, bottom, f"{bottom}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rs)), [range_label(r) for r in rs], fontsize=7)
    ax.set_ylabel("GPUs")
    ax.set_xlabel("pool (length range of the routing key, GPU x TP)")
    ax.set_title("GPUs per pool")
    ax.margins(y=0.12)
    if any(p.get("phase") == "prefill" for p in result["pools"]):
        from matplotlib.patches import Patch

        h, lab = ax.get_legend_handles_labels()
        ax.legend(h + [Patch(facecolor="white", edgecolor="black", hatch="//")], lab + ["prefill instances"],
                  fontsize=7)
    else:
        ax.legend(fontsize=7, title="GPU", title_fontsize=7)
    gs = sorted(totals, key=lambda g: -totals[g])
    ax2.barh(range(len(gs)), [totals[g] for g in gs], color=[gpu_colour(g) for g in gs])
    for k, g in enumerate(gs):
        ax2.text(totals[g], k, f" {totals[g]}", va="center", fontsize=8)
    ax2.set_yticks(range(len(gs)), gs, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("GPUs")
    ax2.set_title(f"fleet: {sum(totals.values())} GPUs by type")
    ax2.margins(x=0.25)
    fig.tight_layout()
    return fig


def pool_boundaries(result: dict, inputs: dict | None = None) -> Any:
    """The routed length distribution (share of requests and of tokens per log-spaced
    bin), the pool boundaries on it, and each pool's share of requests and output tokens."""
    plt = _plt()
    import numpy as np

    rl = ((inputs or {}).get("workload") or {}).get("routed_lengths")
    sh = shares(result)
    fig, ax = plt.subplots(figsize=(10, 4.6))
    key = "input + output" if not rl or rl.get("routing_key") == "total" else rl["routing_key"].replace("_", " ")
    if rl:
        e = np.asarray(rl["edges_tokens"], float)
        ax.stairs(100 * np.asarray(rl["requests"]), e, fill=True, color="#cfd8e3", label="requests")
        ax.stairs(100 * np.asarray(rl["tokens"]), e, color="#34495e", linewidth=1.4,
                  label="tokens (input + output)")
        xmin = e[0]
    else:
        xmin = max(1.0, min(r["hi"] for r in sh) / 8)
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=20))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.tick_params(axis="x", labelsize=7)
    ymax = ax.get_ylim()[1] if rl else 1.0
    for k, r in enumerate(sh):
        lo = max(r["lo"], xmin)
        gs = list(dict.fromkeys(str(p["gpu"]) for p in r["rows"] if p.get("phase") != "prefill"))
        ax.axvspan(lo, r["hi"], color=gpu_colour(gs[0]), alpha=0.18, linewidth=0)
        if k < len(sh) - 1:
            ax.axvline(r["hi"], color="black", linestyle="--", linewidth=1)
            ax.text(r["hi"], ymax * (1.03 if k % 2 == 0 else 1.1), f"{r['hi']:.0f}", ha="center", va="bottom",
                    fontsize=8, bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
        mid = float(np.sqrt(lo * r["hi"]))
        level = 0.97 - 0.22 * (k % 2)                       # neighbours' notes at two heights
        ax.text(mid, ymax * level, f"pool {k + 1}: {'+'.join(gs)}\n{100 * r['requests']:.1f} % of requests\n"
                f"{100 * r['tokens']:.1f} % of output tokens", ha="center", va="top", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": gpu_colour(gs[0])})
    ax.set_ylim(0, ymax * 1.2)
    ax.set_xlim(xmin, sh[-1]["hi"] * 1.05)
    ax.set_xlabel(f"routing key ({key}), tokens (log scale)")
    ax.set_ylabel("share per bin, %")
    ax.set_title("pool boundaries over the routed length distribution")
    if rl:
        ax.legend(loc="center right", fontsize=7)
    fig.tight_layout()
    return fig


def power(result: dict, inputs: dict | None = None) -> Any:
    """Expected IT power, facility power (IT x PUE) and provisioned facility power (on the
    cap's basis) against the facility power cap, with the headroom."""
    plt = _plt()
    f = result["fleet"]
    pw = (inputs or {}).get("power") or {}
    cap_mw = pw.get("facility_cap_mw")
    basis = pw.get("provisioning_basis") or "peak"
    vals = [("IT\n(expected)", f.get("it_power_kw")), ("facility\n(IT x PUE)", f.get("facility_power_kw")),
            (f"provisioned facility\n({basis} basis)", f.get("provisioned_facility_kw"))]
    vals = [(k, float(v)) for k, v in vals if v is not None]
    top = max([v for _, v in vals] + ([cap_mw * 1e3] if cap_mw else []))
    scale, unit = power_unit_kw(top)
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    cols = ["#5b8cc0", "#2e5c8a", "#1f3b73"]
    ax.bar(range(len(vals)), [v / scale for _, v in vals], color=cols[:len(vals)])
    for i, (_, v) in enumerate(vals):
        ax.text(i, v / scale, f"{v / scale:.4g} {unit}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(vals)), [k for k, _ in vals], fontsize=8)
    ax.set_ylabel(f"power, {unit}")
    if cap_mw:
        cap = cap_mw * 1e3 / scale
        ax.axhline(cap, color=CAP_COLOUR, linestyle="--", linewidth=1.5, label=f"facility cap {cap:.4g} {unit}")
        prov = f.get("provisioned_facility_kw")
        if prov is not None:
            head = cap_mw * 1e3 - float(prov)
            ax.annotate("", xy=(len(vals) - 1 + 0.45, cap), xytext=(len(vals) - 1 + 0.45, float(prov) / scale),
                        arrowprops={"arrowstyle": "<->", "color": CAP_COLOUR})
            ax.text(len(vals) - 1 + 0.5, (cap + float(prov) / scale) / 2,
                    f" headroom\n {head / scale:.3g} {unit}\n ({100 * head / (cap_mw * 1e3):.1f} % of cap)",
                    va="center", fontsize=7, color=CAP_COLOUR)
        ax.legend(fontsize=8, loc="lower left")
        ax.set_title(f"power against the facility cap ({basis} basis)")
    else:
        ax.set_title("power (no facility power cap set)")
    ax.set_xlim(-0.6, len(vals) - 1 + 1.2)
    ax.margins(y=0.15)
    fig.tight_layout()
    return fig


BASELINE_NAMES = {"homogeneous": "homogeneous", "two_pool_paper": "two-pool (paper)",
                  "aggregated": "best aggregated", "milp": "MILP plan"}


def baselines(result: dict, inputs: dict | None = None) -> Any:
    """The plan against every baseline: tokens per joule, GPUs, cost and facility power."""
    plt = _plt()
    rows = [("plan", {"topology": result.get("topology"), **result["fleet"]})]
    rows += [(BASELINE_NAMES.get(k, k), b) for k, b in (result.get("baselines") or {}).items() if b]
    if len(rows) < 2:
        return None
    fkw = max(float(b.get("facility_power_kw") or 0.0) for _, b in rows)
    scale, unit = power_unit_kw(fkw)
    metrics = [("tokens_per_joule", "tokens per joule (IT), tok/J", 1.0),
               ("gpus", "GPUs", 1.0),
               ("cost_per_hour", "cost, $/h", 1.0),
               ("facility_power_kw", f"facility power, {unit}", scale)]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.8))
    names = [n for n, _ in rows]
    colours = [PLAN_COLOUR] + [BASELINE_COLOUR] * (len(rows) - 1)
    for ax, (key, label, div) in zip(axes, metrics):
        v = [float(b.get(key) or 0.0) / div for _, b in rows]
        ax.bar(range(len(v)), v, color=colours)
        for i, x in enumerate(v):
            ax.text(i, x, f"{x:.4g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(v)), names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(label, fontsize=8)
        ax.set_title(label.split(",")[0], fontsize=9)
        ax.margins(y=0.15)
    fig.suptitle("the plan against its baselines (same model)", fontsize=10)
    fig.tight_layout()
    return fig


def verification(result: dict, inputs: dict | None = None) -> Any:
    """Analytical against simulated P99 TTFT and TPOT per pool, with the SLOs."""
    v = result.get("verification")
    if not v or not v.get("pools"):
        return None
    plt = _plt()
    import numpy as np

    pools = v["pools"]
    slo = (inputs or {}).get("slo") or {}
    labels = [f"{p['lo_tokens']:.0f}-{p['hi_tokens']:.0f} tok\n{p['gpu']}x{p['tp']}" for p in pools]
    x = np.arange(len(pools))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (m, name, s) in zip(axes, (("ttft_p99_ms", "P99 TTFT", slo.get("ttft_p99_ms")),
                                      ("tpot_p99_ms", "P99 TPOT", slo.get("tpot_p99_ms")))):
        ana = [float(p.get(f"analytical_{m}") or 0.0) for p in pools]
        sim = [float(p.get(m) or 0.0) for p in pools]
        ax.bar(x - 0.2, ana, 0.4, color="#7f9cbf", label="analytical")
        ax.bar(x + 0.2, sim, 0.4, color="#e67e22", label="simulated")
        for i in range(len(pools)):
            ax.text(x[i] - 0.2, ana[i], f"{ana[i]:.3g}", ha="center", va="bottom", fontsize=6)
            ax.text(x[i] + 0.2, sim[i], f"{sim[i]:.3g}", ha="center", va="bottom", fontsize=6)
        if s:
            ax.axhline(float(s), color=CAP_COLOUR, linestyle="--", linewidth=1.2, label=f"SLO {float(s):g} ms")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(f"{name}, ms")
        ax.set_xlabel("pool")
        ax.set_title(f"{name}: analytical against simulated")
        ax.legend(fontsize=7)
        ax.margins(y=0.15)
    sim_meta = v.get("sim") or {}
    fig.suptitle(f"verification: {sim_meta.get('requests', '?')} simulated requests, seed {sim_meta.get('seed', '?')}"
                 + (" - SLO MISSED" if v.get("slo_missed") else ""), fontsize=10)
    fig.tight_layout()
    return fig


def pareto(result: dict, inputs: dict | None = None) -> Any:
    """Refinement with two objectives: every completed trial and the Pareto front."""
    ref = result.get("refine") or {}
    front = ref.get("pareto")
    names = ref.get("metric_names") or []
    if not front or len(names) < 2:
        return None
    plt = _plt()
    main_k, other_k = names[0], names[1]
    fig, ax = plt.subplots(figsize=(7, 4.4))
    done = [h for h in ref.get("history") or [] if h.get("state") == "COMPLETE" and h.get("values")]
    if done:
        ax.scatter([h["values"][1] for h in done], [h["values"][0] for h in done], s=12, color=BASELINE_COLOUR,
                   label="completed trials")
    fr = sorted(front, key=lambda r: r[other_k])
    ax.plot([r[other_k] for r in fr], [r[main_k] for r in fr], "o-", color=PLAN_COLOUR, label="Pareto front")
    ax.set_xlabel(_metric_label(other_k))
    ax.set_ylabel(_metric_label(main_k))
    ax.set_title("refinement: Pareto front")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _metric_label(k: str) -> str:
    return {"tokens_per_joule": "tokens per joule (IT), tok/J", "cost_per_hour": "cost, $/h",
            "ttft_p99_ms": "P99 TTFT, ms"}.get(k, k)


def refine_history(result: dict, inputs: dict | None = None) -> Any:
    """Refinement: the objective of every trial in order, the best so far, and the pruned
    trials by reason."""
    ref = result.get("refine") or {}
    hist = ref.get("history")
    if not hist:
        return None
    plt = _plt()
    names = ref.get("metric_names") or ["objective"]
    maximise = names[0] != "cost_per_hour"
    fig, ax = plt.subplots(figsize=(9, 4.2))
    done = [h for h in hist if h.get("state") == "COMPLETE" and h.get("values")]
    ax.scatter([h["trial"] for h in done], [h["values"][0] for h in done], s=14, color="#5b8cc0",
               label="completed trial")
    best, xs, ys = None, [], []
    for h in sorted(done, key=lambda h: h["trial"]):
        v = h["values"][0]
        if best is None or (v > best if maximise else v < best):
            best = v
        xs.append(h["trial"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color=PLAN_COLOUR, linewidth=1.6, label="best so far")
    pruned = [h for h in hist if h.get("state") == "PRUNED"]
    if pruned:
        reasons: dict[str, list[int]] = {}
        for h in pruned:
            why = (h.get("pruned_because") or "pruned").split(":")[0][:40]
            reasons.setdefault(why, []).append(h["trial"])
        marks = ["x", "+", "1", "v", "^", "s"]
        for k, (why, ts) in enumerate(sorted(reasons.items(), key=lambda kv: -len(kv[1]))[:6]):
            ax.scatter(ts, [0.04 + 0.05 * k] * len(ts), marker=marks[k], color=CAP_COLOUR, s=20,
                       transform=ax.get_xaxis_transform(), label=f"pruned: {why} ({len(ts)})")   # a strip at the bottom
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.25 * (hi - lo), hi)
    ax.set_xlabel("trial")
    ax.set_ylabel(_metric_label(names[0]))
    ax.set_title("refinement: optimisation history")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


FIGURES: list[tuple[str, str, Any]] = [
    ("fleet_composition.png", "Fleet composition: GPUs by type and pool", fleet_composition),
    ("pool_boundaries.png", ("Pool boundaries over the routed length distribution, with each pool's share of "
                             "requests and output tokens"), pool_boundaries),
    ("power.png", "Power against the facility cap: IT, facility and provisioned, with the headroom", power),
    ("baselines.png", "The plan against every baseline: tokens per joule, GPUs, cost and facility power", baselines),
    ("verification.png", "Analytical against simulated P99 TTFT and TPOT per pool", verification),
    ("pareto.png", "Refinement: the Pareto front", pareto),
    ("refine_history.png", "Refinement: optimisation history", refine_history),
]
"""(file name, caption, function) of every plot a report may hold, in report order."""


def render_png(fig: Any, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (no timestamp in the file, so equal plots give equal bytes);
    the figure is closed."""
    import io

    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()
