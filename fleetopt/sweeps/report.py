"""``fleetopt sweep-report``: what a planner reads off a sweep.

From the Parquet rows under OUT/cases it writes OUT/report/:
* ``report.md``: pivot tables (tokens per joule, gain over the homogeneous fleet, GPUs) over
  the sweep's first two numeric axes, and the plan per case along each axis;
* ``heatmap_<metric>.png``: tokens per joule and the gain over the homogeneous fleet over
  two axes (e.g. long-context share x arrival rate);
* ``power_cap.png``: GPUs, facility MW and traffic served against the power cap, when the
  cap is an axis;
* ``boundaries_<axis>.png``: where the pool boundaries sit, and on which GPU, along an axis.

The folder is written as one set (``fleetopt.files.write_set``): a kill leaves the whole
previous report or the whole new one; a full or read-only disk is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetopt.atomic import write_atomic, write_set
from fleetopt.errors import FleetoptError

if TYPE_CHECKING:
    from pandas import DataFrame


def _g(v: float) -> str:
    """A figure to 4 significant digits."""
    return f"{v:.4g}"


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


def report(out_dir: str) -> dict[str, Any]:
    """Pivot tables (markdown) and heatmaps (PNG) of a sweep's results, written under
    ``OUT/report`` as one set; returns the text and the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    df = _load(out)
    ok = df[df["status"].isin(["optimal", "time_limit"])].copy()
    rd = out / "report"
    pending: dict[str, Callable[[Path], None]] = {}     # file name -> writer(path); written together at the end

    def save(fig: Any, name: str) -> None:
        """Queue the figure as ``report/<name>``."""

        def write(path: Path, fig: Any = fig) -> None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        pending[name] = write
        files.append(str(rd / name))

    files: list[str] = []
    parts = [f"# sweep report: {len(df)} cases, {len(ok)} solved, "
                        f"{int((df['status'] == 'infeasible').sum())} infeasible, "
                        f"{int((df['status'] == 'failed').sum())} failed\n"]
    axes = _axes(ok)
    names = {a: a.split(":", 1)[1] for a in axes}
    if len(axes) >= 2:
        y, x = axes[0], axes[1]
        for metric, title in (("tokens_per_joule", "tokens per joule"), ("gain_vs_homog", "gain over homogeneous"),
                              ("gpus", "GPUs")):
            if metric not in ok or ok[metric].isna().all():
                continue
            pv = ok.pivot_table(index=y, columns=x, values=metric, aggfunc="mean").sort_index()
            parts.append(f"\n## {title}: {names[y]} (rows) x {names[x]} (columns)\n\n"
                         f"```\n{pv.to_string(float_format=_g)}\n```\n")
            if metric == "gpus":
                continue
            fig, ax = plt.subplots(figsize=(1.2 + 0.45 * pv.shape[1], 1.2 + 0.4 * pv.shape[0]))
            im = ax.imshow(pv.values, aspect="auto", origin="lower", cmap="viridis")
            ax.set_xticks(range(pv.shape[1]), [f"{v:g}" for v in pv.columns], rotation=60, fontsize=7)
            ax.set_yticks(range(pv.shape[0]), [f"{v:g}" for v in pv.index], fontsize=7)
            ax.set_xlabel(names[x])
            ax.set_ylabel(names[y])
            ax.set_title(title)
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            save(fig, f"heatmap_{metric}.png")
    cap = next((a for a in axes if a.endswith("facility_cap_mw")), None)
    if cap is not None:
        s = ok.sort_values(cap)
        fig, ax1 = plt.subplots(figsize=(7, 4))
        ax1.plot(s[cap], s["gpus"], "o-", label="GPUs")
        ax1.set_xlabel("facility power cap, MW")
        ax1.set_ylabel("GPUs")
        ax2 = ax1.twinx()
        ax2.plot(s[cap], s["facility_power_kw"] / 1e3, "s--", color="tab:red", label="facility MW used")
        ax2.set_ylabel("facility MW")
        fig.legend(loc="upper left")
        fig.tight_layout()
        save(fig, "power_cap.png")
        cols = [cap, "arrival_rate", "gpus", "facility_power_kw", "tokens_per_joule", "topology"]
        parts.append(f"\n## against the power cap\n\n```\n{s[cols].to_string(index=False, float_format=_g)}\n```\n")
    for a in axes:
        s = ok.sort_values(a)
        fig, ax = plt.subplots(figsize=(7, 4))
        for _, r in s.iterrows():
            pools = r["topology"].split(",")
            for pool in pools[:-1]:
                up, g = pool.split(":")[0], pool.split(":")[1]
                ax.scatter(r[a], int(up), s=18, c=f"C{abs(hash(g)) % 10}", label=g)
        h, lab = ax.get_legend_handles_labels()
        uniq = dict(zip(lab, h))
        if uniq:
            ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(names[a])
        ax.set_ylabel("pool boundary, tokens (GPU of the pool below)")
        fig.tight_layout()
        save(fig, f"boundaries_{names[a].replace('.', '_')}.png")
    if not axes:
        parts.append("\n(no numeric axis varies: nothing to pivot)\n")
    summary = ok.groupby("topology").size().sort_values(ascending=False).head(15)
    parts.append(f"\n## plans chosen most often\n\n```\n{summary.to_frame('cases').to_string()}\n```\n")
    text = "".join(parts)
    pending["report.md"] = lambda path: write_atomic(path, text)
    try:
        write_set(rd, pending, "sweep-report", force=True, owned=True)
    finally:
        plt.close("all")
    files.insert(0, str(rd / "report.md"))
    return {"cases": len(df), "solved": len(ok), "files": files, "text": text}
