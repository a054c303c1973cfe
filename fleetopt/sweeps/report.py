"""``fleetopt sweep-report``: what a planner reads off a sweep.

From the Parquet rows under OUT/cases it writes OUT/report/:
* ``report.md``: Markdown tables: the cases by status, pivot tables (tokens per joule,
  gain over the homogeneous fleet, GPUs) over the sweep's first two numeric axes, the
  power-cap ladder, the plans chosen most often, and the failed or infeasible cases;
* ``heatmap_<metric>.png``: tokens per joule, the gain over the homogeneous fleet and the
  GPUs over two axes (e.g. long-context share x arrival rate), each cell's value written
  in it, cells with no plan marked, colour bars labelled with their unit;
* ``power_cap.png``: the power-cap ladder, when the cap is an axis: traffic served,
  GPUs, and the facility power used as a share of the cap, on three stacked axes;
* ``boundaries_<axis>.png``: every case's pools along an axis, each pool a bar from its
  lower to its upper bound coloured by its GPU (single-pool plans included); GPUs keep
  their colour in every plot and run (``fleetopt.plan_report.colours``).

The folder is written as one set (``fleetopt.files.write_set``): a kill leaves the whole
previous report or the whole new one; a full or read-only disk is one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetopt.atomic import write_atomic, write_set
from fleetopt.errors import FleetoptError
from fleetopt.plan_report.colours import gpu_colour, split_gpu_tp
from fleetopt.plan_report.document import Table
from fleetopt.plan_report.markdown import table

if TYPE_CHECKING:
    from pandas import DataFrame

SOLVED = ("optimal", "time_limit")

AXIS_LABELS: dict[str, str] = {
    "workload.arrival_rate": "arrival rate, req/s",
    "power.facility_cap_mw": "facility power cap, MW",
    "power.pue": "PUE",
    "power.host_w_per_node": "host power per node, W",
    "slo.ttft_p99_ms": "P99 TTFT SLO, ms",
    "slo.tpot_p99_ms": "P99 TPOT SLO, ms",
    "slo.max_utilization": "utilisation cap",
    "workload.output_scale": "output scale, x",
    "pools.max_pools": "pools at most (K)",
    "pools.split_grid": "split grid",
    "pools.paper_boundary": "paper boundary, tokens",
    "long_context_share": "long-context share of requests",
}
"""Axis (instance field path or named axis) -> label with its unit."""

METRIC_LABELS: dict[str, tuple[str, float]] = {
    "tokens_per_joule": ("tokens per joule (IT), tok/J", 1.0),
    "gain_vs_homog": ("gain over the homogeneous fleet, %", 100.0),
    "gpus": ("GPUs", 1.0),
}
"""Metric -> (label with its unit, factor from the column to the unit)."""


def axis_label(axis: str) -> str:
    """A readable label with its unit for an axis (``axis:`` prefix or not)."""
    name = axis.split(":", 1)[1] if axis.startswith("axis:") else axis
    if name in AXIS_LABELS:
        return AXIS_LABELS[name]
    if name.endswith(".max_gpus"):
        return f"{name.rsplit('.', 1)[0]} inventory, GPUs"
    return name


def _g(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _tick(v: float, _pos: Any = None) -> str:
    """An axis tick without exponent: 48,000, 1,400, 12.5, 0.25."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"


def _load(out: Path) -> DataFrame:
    """The sweep's case results (every Parquet file under ``out/cases``)."""
    import pandas as pd

    d = out / "cases"
    if not d.exists() or not any(d.glob("*.parquet")):
        raise FleetoptError(f"sweep-report: no results in '{d}' (run fleetopt sweep --out {out} first)")
    try:
        return pd.read_parquet(d)
    except Exception as e:     # noqa: BLE001  (pyarrow's errors for a damaged or foreign file are not OSErrors)
        raise FleetoptError(f"sweep-report: cannot read the results in '{d}' "
                            f"({(str(e).splitlines() or [type(e).__name__])[0]})") from None


def _axes(df: DataFrame) -> list[str]:
    """The swept numeric axes (columns ``axis:*`` taking more than one value)."""
    import pandas as pd

    axes = [c for c in df.columns if c.startswith("axis:")]
    return [a for a in axes if df[a].nunique() > 1 and pd.api.types.is_numeric_dtype(df[a])]


def parse_topology(topology: str) -> list[dict]:
    """A plan's topology string as pools: {lo, hi, gpu, share} (a split pool by its decode
    GPU, a mixed range's members each with their share)."""
    pools: list[dict] = []
    lo = 0.0
    uppers: list[float] = []
    for item in topology.split(","):
        item = item.strip()
        if not item:
            continue
        up_s, rest = item.split(":", 1)
        up = float(up_s)
        if rest.startswith("pd("):
            cfg = rest[3:].split(")")[0].split("/")[-1].split(":")[0]
        else:
            cfg = rest.split(":")[0]
        share = 1.0
        if "@" in cfg:
            cfg, sh = cfg.split("@", 1)
            share = float(sh)
        if uppers and up == uppers[-1]:
            lo_k = pools[-1]["lo"]
        else:
            lo_k = uppers[-1] if uppers else lo
            uppers.append(up)
        pools.append({"lo": lo_k, "hi": up, "gpu": split_gpu_tp(cfg)[0], "share": share})
    return pools


def _md_table(header: list[str], rows: list[list[Any]], numeric: list[bool] | None = None) -> str:
    return table(Table([str(h) for h in header], [[_g(c) for c in r] for r in rows], numeric or []))


def _pivot_md(pv: DataFrame, y: str, x: str, scale: float) -> str:
    header = [f"{axis_label(y)} \\ {axis_label(x)}"] + [_g(c) for c in pv.columns]
    rows = [[_g(i)] + [None if math.isnan(v) else v * scale for v in pv.loc[i].tolist()] for i in pv.index]
    return _md_table(header, rows, [False] + [True] * len(pv.columns))


def heatmap(plt: Any, pv: Any, status: list[list[str]], y: str, x: str, metric: str, note: str = "") -> Any:
    """A heatmap of ``pv`` (rows: y values, columns: x values) with each value in its cell,
    cells without a plan marked with the reason (``status``: the same shape, text)."""
    import numpy as np

    label, scale = METRIC_LABELS[metric]
    vals = pv.values.astype(float) * scale
    ny, nx = vals.shape
    fig, ax = plt.subplots(figsize=(max(6.5, 1.8 + 0.62 * nx), max(3.4, 1.5 + 0.42 * ny)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")     # cells without a plan: grey
    im = ax.imshow(np.ma.masked_invalid(vals), aspect="auto", origin="lower", cmap=cmap)
    finite = vals[np.isfinite(vals)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    fs = 7 if nx <= 12 else 6 if nx <= 18 else 5
    for i in range(ny):
        for j in range(nx):
            v = vals[i, j]
            if np.isfinite(v):
                txt = f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=fs, color="black" if v > mid else "white")
            else:
                ax.text(j, i, status[i][j] or "", ha="center", va="center", fontsize=fs - 1, color="#7f0000")
    ax.set_xticks(range(nx), [_g(v) for v in pv.columns], rotation=60 if nx > 8 else 0, fontsize=7)
    ax.set_yticks(range(ny), [_g(v) for v in pv.index], fontsize=7)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.set_title(f"{label.split(',')[0]}\nover {axis_label(y).split(',')[0]} and {axis_label(x).split(',')[0]}"
                 + (f" ({note})" if note else ""), fontsize=9)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(label)
    fig.tight_layout()
    return fig


def _status_grid(df: DataFrame, y: str, x: str, pv: DataFrame) -> list[list[str]]:
    """Per pivot cell: '' when it has a plan, else why not (infeasible, failed, ...)."""
    grid = []
    for yv in pv.index:
        row = []
        for xv in pv.columns:
            st = df[(df[y] == yv) & (df[x] == xv)]["status"]
            bad = [s for s in st if s not in SOLVED]
            row.append("" if len(bad) < len(st) else {"infeasible": "infeas.", "failed": "failed"}.get(
                bad[0], bad[0].replace("_", " ")) if bad else "")
        grid.append(row)
    return grid


def power_cap_ladder(plt: Any, df: Any, cap: str, others: list[str]) -> Any:
    """Traffic served, GPUs and the facility power used as a share of the cap, against the
    cap, on three stacked axes sharing it; one line per value of another axis (up to 8); cases with no plan
    marked at zero served."""
    import numpy as np

    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True)
    groups = [(None, df)]
    if others:
        o = others[0]
        vals = sorted(df[o].dropna().unique())[:8]
        groups = [(v, df[df[o] == v]) for v in vals]
    for k, (v, g) in enumerate(groups):
        g = g.sort_values(cap)
        ok = g[g["status"].isin(SOLVED)]
        name = None
        if v is not None:
            what, _, unit = axis_label(others[0]).partition(", ")
            name = f"{what} = {_g(v)}{' ' + unit if unit else ''}"
        c = f"C{k}"
        a1.plot(ok[cap], ok["arrival_rate"], "o-", color=c, markersize=4, label=name)
        a2.plot(ok[cap], ok["gpus"], "s-", color=c, markersize=4, label=name)
        a3.plot(ok[cap], 100 * ok["facility_power_kw"] / 1e3 / ok[cap], "^-", color=c, markersize=4, label=name)
        miss = g[~g["status"].isin(SOLVED)]
        if len(miss):
            a1.scatter(miss[cap], np.zeros(len(miss)), marker="x", color="#c0392b", zorder=3,
                       label="no plan (infeasible or failed)" if k == 0 else None)
    a3.axhline(100.0, linestyle="--", color="#c0392b", linewidth=1.2, label="the cap")
    a1.set_ylabel("traffic served, req/s")
    a2.set_ylabel("GPUs")
    a3.set_ylabel("facility power used (expected),\n% of the cap")
    a3.set_xlabel(axis_label(cap))
    for a in (a1, a2, a3):
        a.grid(True, alpha=0.3)
        a.yaxis.set_major_formatter(plt.matplotlib.ticker.FuncFormatter(_tick))
    a1.set_title("power-cap ladder: what each cap serves, with which fleet")
    if others or len(df[~df["status"].isin(SOLVED)]):
        a1.legend(fontsize=7)
    a3.legend(fontsize=7)
    fig.tight_layout()
    return fig


def boundaries_plot(plt: Any, df: Any, axis: str) -> Any:
    """Every solved case's pools along ``axis``: at each axis value one bar per case (side
    by side when other axes vary), each pool a segment from its lower to its upper bound
    (log scale) in its GPU's colour; single-pool plans are one segment."""
    from matplotlib.patches import Patch


    ok = df[df["status"].isin(SOLVED)].sort_values(axis)
    xs = sorted(ok[axis].dropna().unique())
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 + 0.45 * len(xs)), 4.6))
    pools_all = [parse_topology(t) for t in ok["topology"]]
    ups = [p["hi"] for ps in pools_all for p in ps]
    if not ups:
        plt.close(fig)
        return None
    floor = 2.0 ** math.floor(math.log2(max(min(ups) / 4, 1.0)))
    seen: dict[str, None] = {}
    for i, xv in enumerate(xs):
        rows = ok[ok[axis] == xv]
        n = len(rows)
        w = 0.8 / n
        for k, topo in enumerate(rows["topology"]):
            x0 = i - 0.4 + k * w
            members: dict[tuple[float, float], list[dict]] = {}
            for p in parse_topology(topo):
                members.setdefault((p["lo"], p["hi"]), []).append(p)
            for (lo, hi), ms in members.items():
                left = x0
                for m in ms:                       # a mixed range: its members side by side by share
                    mw = w * m["share"] / sum(q["share"] for q in ms)
                    seen[m["gpu"]] = None
                    ax.bar(left, hi - max(lo, floor), mw * 0.95, bottom=max(lo, floor), align="edge",
                           color=gpu_colour(m["gpu"]), edgecolor="white", linewidth=0.6)
                    left += mw
    ax.set_yscale("log", base=2)
    ax.set_ylim(floor, max(ups) * 1.1)
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.FuncFormatter(_tick))
    ax.set_xticks(range(len(xs)), [_g(v) for v in xs], rotation=60 if len(xs) > 10 else 0, fontsize=7)
    ax.set_xlim(-0.6, len(xs) - 0.4)
    ax.set_xlabel(axis_label(axis) + ("  (one bar per case at each value)" if len(ok) > len(xs) else ""))
    ax.set_ylabel("pool length range (routing key), tokens")
    ax.set_title(f"pools and their GPUs along {axis_label(axis).split(',')[0]}")
    ax.legend([Patch(color=gpu_colour(g)) for g in seen], list(seen), fontsize=7, title="GPU", title_fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def report(out_dir: str) -> dict:
    """Write OUT/report (see the module docstring); returns {cases, solved, files, text}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    out = Path(out_dir)
    df = _load(out)
    ok = df[df["status"].isin(SOLVED)].copy()
    rd = out / "report"
    pending: dict = {}                  # file name -> writer(path); written together at the end
    files: list[str] = []

    def save(fig: Any, name: str) -> None:
        """Queue the figure as ``report/<name>``."""

        if fig is None:
            return

        def write(path: Path, fig: Any = fig) -> None:
            fig.savefig(path, dpi=110, metadata={"Software": None})
            plt.close(fig)
        pending[name] = write
        files.append(str(rd / name))

    counts = df["status"].value_counts()
    parts = [(f"# sweep report: {len(df)} cases, {len(ok)} solved, {int(counts.get('infeasible', 0))} infeasible, "
              f"{int(counts.get('failed', 0))} failed\n"),
             "\n" + _md_table(["status", "cases"], [[k, int(v)] for k, v in counts.items()], [False, True]) + "\n"]
    axes = _axes(df)
    if len(axes) >= 2:
        y, x = axes[0], axes[1]
        for metric in ("tokens_per_joule", "gain_vs_homog", "gpus"):
            if metric not in ok or ok[metric].isna().all():
                continue
            label, scale = METRIC_LABELS[metric]
            pv = ok.pivot_table(index=y, columns=x, values=metric, aggfunc="mean").sort_index()
            full = df.pivot_table(index=y, columns=x, values="seconds", aggfunc="count").sort_index()
            pv = pv.reindex(index=full.index, columns=full.columns)          # cells with no plan kept, empty
            note = "mean over the other axes" if len(axes) > 2 else ""
            parts.append(f"\n## {label}: {axis_label(y)} (rows) x {axis_label(x)} (columns)"
                         f"{f' ({note})' if note else ''}\n\n{_pivot_md(pv, y, x, scale)}\n")
            save(heatmap(plt, pv, _status_grid(df, y, x, pv), y, x, metric, note), f"heatmap_{metric}.png")
    cap = next((a for a in axes if a.endswith("facility_cap_mw")), None)
    if cap is not None:
        save(power_cap_ladder(plt, df, cap, [a for a in axes if a != cap]), "power_cap.png")
        s = df.sort_values(cap)
        rows = [[r[cap], r["status"], r["arrival_rate"], r["gpus"],
                 None if math.isnan(r["facility_power_kw"]) else r["facility_power_kw"] / 1e3,
                 r["tokens_per_joule"], f"`{r['topology']}`" if isinstance(r["topology"], str) else "-"]
                for _, r in s.iterrows()]
        parts.append("\n## against the power cap\n\n" + _md_table(
            [axis_label(cap), "status", "traffic served (req/s)", "GPUs", "facility power used (MW)", "tok/J",
             "topology"], rows, [True, False, True, True, True, True, False]) + "\n")
    for a in axes:
        save(boundaries_plot(plt, df, a), f"boundaries_{a.split(':', 1)[1].replace('.', '_')}.png")
    if not axes:
        parts.append("\n(no numeric axis varies: nothing to pivot)\n")
    if len(ok):
        top = ok.groupby("topology").size().sort_values(ascending=False).head(15)
        parts.append("\n## plans chosen most often\n\n" + _md_table(
            ["topology", "cases"], [[f"`{t}`", int(n)] for t, n in top.items()], [False, True]) + "\n")
    bad = df[~df["status"].isin(SOLVED)]
    if len(bad):
        labels = [c for c in df.columns if c.startswith("axis:")]
        rows = [[r["case_id"], ", ".join(f"{c[5:]}={_g(r[c])}" for c in labels if r[c] == r[c] and r[c] is not None),
                 r["status"], (r["error"] or "")[:160]] for _, r in bad.head(50).iterrows()]
        parts.append("\n## cases without a plan\n\n" + _md_table(["case", "labels", "status", "error"], rows) + "\n")
    text = "".join(parts)
    pending["report.md"] = lambda path: write_atomic(path, text)
    try:
        write_set(rd, pending, "sweep-report", force=True, owned=True)
    finally:
        plt.close("all")
    files.insert(0, str(rd / "report.md"))
    return {"cases": len(df), "solved": len(ok), "files": files, "text": text}
