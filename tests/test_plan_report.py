"""The plan report (`solve/evaluate/refine --out`): files on disk with their modes, Markdown
tables, a complete plan.json, a self-contained HTML that renders its plots in headless
Chromium, plots that apply only when they should, GPU colours fixed across processes."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import fleetopt
from fleetopt.cli import main
from fleetopt.plan_report import OUT_FILES
from fleetopt.plan_report.colours import GPU_COLOURS, gpu_colour

REPO = Path(__file__).resolve().parents[1]
INST = REPO / "instances"
HETERO = INST / "heterogeneous.yaml"
SEP = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")


@pytest.fixture(scope="module")
def hetero_report(tmp_path_factory) -> Path:
    """`fleetopt solve instances/heterogeneous.yaml --out DIR` under umask 022."""
    out = tmp_path_factory.mktemp("rep") / "plan"
    old = os.umask(0o022)
    try:
        assert main(["solve", str(HETERO), "--out", str(out), "--format", "json"]) == 0
    finally:
        os.umask(old)
    return out


def md_tables(text: str) -> list[list[list[str]]]:
    """The pipe tables of a Markdown text, as rows of cells (separator rows dropped)."""
    tables, cur = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if SEP.match(line):
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cur is None:
                cur = []
                tables.append(cur)
            cur.append(cells)
        else:
            cur = None
    return tables


def test_solve_out_writes_tables_html_and_plots_0644(hetero_report):
    out = hetero_report
    names = {p.name for p in out.iterdir()}
    pngs = sorted(n for n in names if n.endswith(".png"))
    assert {"plan.json", "pools.csv", "plan.md", "plan.html"} <= names and len(pngs) >= 4
    assert names <= set(OUT_FILES)
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "plan.md").read_text()
    assert "```" not in md                                  # tables, not terminal text in code blocks
    tables = md_tables(md)
    assert len(tables) >= 5
    plan = json.loads((out / "plan.json").read_text())
    header = next(t for t in tables if t[0][:2] == ["pool", "range (tokens)"])
    assert len(header) - 1 == len(plan["pools"])           # one row per pool
    assert all(f"]({n})" in md for n in pngs)                # every plot linked
    inputs = next(t for t in tables if t[0] == ["input", "value"])
    kv = dict(r for r in inputs[1:])
    assert kv["P99 TTFT SLO (ms)"] == "1,500" and kv["fleetopt version"] == fleetopt.__version__


def test_plan_json_is_complete(hetero_report):
    plan = json.loads((hetero_report / "plan.json").read_text())
    ins = plan["inputs"]
    assert ins["fleetopt_version"] == fleetopt.__version__
    assert ins["calibration"]["label"] == "packaged" and ins["calibration"]["coefficients"]["eta_bw"] > 0
    assert ins["slo"]["ttft_p99_ms"] == 1500 and ins["slo"]["tpot_p99_ms"] == 60
    assert set(ins["power"]) >= {"facility_cap_mw", "provisioning_basis", "pue", "host_w_per_node"}
    assert ins["instance_file"].endswith("heterogeneous.yaml") and ins["instance"]["model"] == plan["model"]
    rl = ins["workload"]["routed_lengths"]
    assert len(rl["edges_tokens"]) == len(rl["requests"]) + 1 and abs(sum(rl["requests"]) - 1) < 1e-5
    assert plan["solver"]["status"] == "optimal" and plan["solver"]["variables"] > 0
    with open(hetero_report / "pools.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["gpu"] for r in rows] == [p["gpu"] for p in plan["pools"]]


def test_plan_html_is_self_contained(hetero_report):
    html = (hetero_report / "plan.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)      # nothing fetched
    assert "<script" not in html and "<link" not in html
    imgs = re.findall(r'<figure id="([^"]+)"><img src="data:image/png;base64,([^"]+)"', html)
    pngs = sorted(p.name for p in hetero_report.glob("*.png"))
    assert sorted(n for n, _ in imgs) == pngs
    for name, data in imgs:                                 # the embedded plots are the PNG files
        assert base64.b64decode(data) == (hetero_report / name).read_bytes()
    assert html.count("<table>") >= 5


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _headless(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run([browser, *flags, *args], check=False, capture_output=True, timeout=120, cwd=tmp)


def test_plan_html_renders_its_plots_in_headless_chromium(hetero_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("needs Chromium (e.g. apt-get install chromium): none on PATH")
    import numpy as np
    from matplotlib.image import imread

    # a copy alone in a folder: the page can only show what it carries
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(hetero_report / "plan.html", alone / "plan.html")
    url = (alone / "plan.html").as_uri()
    dom = _headless(browser, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-500:]
    text = dom.stdout.decode()
    pngs = list(hetero_report.glob("*.png"))
    assert text.count("<img") == len(pngs) and text.count("<table>") >= 5
    shot = tmp_path / "shot.png"
    r = _headless(browser, tmp_path, "--window-size=1280,7000", "--hide-scrollbars", f"--screenshot={shot}", url)
    assert r.returncode == 0 and shot.exists(), r.stderr[-500:]
    img = (imread(str(shot))[:, :, :3] * 255).round().astype(int)
    plan = json.loads((hetero_report / "plan.json").read_text())
    for g in {p["gpu"] for p in plan["pools"]}:             # each plan GPU's colour is painted (the bars)
        rgb = np.array([int(gpu_colour(g)[i:i + 2], 16) for i in (1, 3, 5)])
        hits = int((np.abs(img - rgb).sum(axis=2) <= 6).sum())
        assert hits > 2000, (g, hits)


def test_verify_adds_the_verification_plot_and_table(tmp_path):
    out = tmp_path / "v"
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--out", str(out), "--verify", "--requests", "5000",
                 "--format", "json"]) == 0
    assert (out / "verification.png").exists()
    md = (out / "plan.md").read_text()
    assert "## Verification by simulation" in md
    t = next(t for t in md_tables(md) if "P99 TTFT simulated (ms)" in t[0])
    assert len(t) - 1 == len(json.loads((out / "plan.json").read_text())["verification"]["pools"])
    # a later report without --verify replaces the whole set: the verification plot is gone
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--out", str(out), "--force", "--format", "json"]) == 0
    assert not (out / "verification.png").exists() and (out / "power.png").exists()


def test_a_foreign_file_in_out_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "notes.txt" in err and "\n" not in err and (out / "notes.txt").read_text() == "mine"


def test_power_plot_and_table_against_a_cap(tmp_path):
    out = tmp_path / "c"
    assert main(["solve", str(INST / "datacenter-20mw.yaml"), "--out", str(out), "--format", "json"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["inputs"]["power"]["facility_cap_mw"] == 20
    fleet = dict(r for r in next(t for t in md_tables((out / "plan.md").read_text()) if t[0] == ["figure", "value"]))
    assert "headroom under the cap (kW)" in fleet and fleet["facility power cap (kW)"] == "20,000"


def test_evaluate_out(tmp_path):
    out = tmp_path / "e"
    assert main(["evaluate", str(INST / "azure-conv-h100.yaml"), "--topology", "4096:h100x8,16384:h100x8",
                 "--out", str(out), "--format", "json"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["topology"] == "4096:h100x8,16384:h100x8" and plan["inputs"]["instance"]["name"] == "azure-conv-h100"
    assert {"fleet_composition.png", "pool_boundaries.png", "power.png"} <= {p.name for p in out.iterdir()}
    assert not (out / "baselines.png").exists()             # evaluate has no baselines


def test_refine_out_adds_pareto_and_history(tmp_path):
    out = tmp_path / "r"
    assert main(["refine", str(INST / "azure-conv-h100.yaml"), "--trials", "8", "--pareto", "ttft",
                 "--storage", str(tmp_path / "s.journal"), "--out", str(out), "--format", "json"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"pareto.png", "refine_history.png", "baselines.png", "plan.html"} <= names
    plan = json.loads((out / "plan.json").read_text())
    assert plan["baselines"]["milp"]["topology"] and len(plan["refine"]["history"]) == 8
    assert "## Refinement" in (out / "plan.md").read_text()


def test_split_pools_report(tmp_path):
    out = tmp_path / "pd"
    assert main(["solve", str(INST / "azure-conv-h100.yaml"), "--set", "pools.disaggregation=only", "--out",
                 str(out), "--format", "json"]) == 0
    md = (out / "plan.md").read_text()
    t = next(t for t in md_tables(md) if t[0][:3] == ["pool", "range (tokens)", "phase"])
    assert {r[2] for r in t[1:]} == {"prefill", "decode"}
    assert (out / "fleet_composition.png").exists()


def test_gpu_colours_are_fixed_across_processes():
    """The same colour in another process with another string-hash seed; distinct ones for
    the packaged GPUs."""
    code = "from fleetopt.plan_report.colours import gpu_colour as c; print(c('b200'), c('H100-SXM'), c('my-npu'))"
    seen = set()
    for seed in ("0", "1", "12345"):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed})
        seen.add(p.stdout)
    assert seen == {f"{gpu_colour('b200')} {gpu_colour('h100-sxm')} {gpu_colour('my-npu')}\n"}
    assert len(set(GPU_COLOURS.values())) == len(GPU_COLOURS)


def test_solve_without_out_does_not_import_matplotlib():
    code = ("import sys; from fleetopt.cli import main; main(['solve', sys.argv[1], '--format', 'json']); "
            "print('matplotlib' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, str(INST / "azure-conv-h100.yaml")], check=False,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert p.stderr.strip().splitlines()[-1] == "False"
