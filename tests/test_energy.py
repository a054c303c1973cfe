"""Energy at scale (issue #15): conservation, PUE/host/idle accounting by hand, the
output-scale transform against a hand-built distribution, the energy map, CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleetopt import evaluate, load_instance
from fleetopt.cli import main
from fleetopt.energy_scale import energy_report
from fleetopt.problem import Problem
from fleetopt.topology import parse_topology

from conftest import workload_of

SMALL = """\
schema_version: 1
name: small
model: llama-3.1-8b
gpus: [{{id: h100-sxm, tp: [1]}}]
workload:
  distribution:
    type: histogram
    points_per_dim: 1
    cells:
      - [200, 202, 100, 102, 0.5]
      - [800, 802, 300, 302, 0.5]
  arrival_rate: {rate}
{extra}slo: {{ttft_p99_ms: 1000, tpot_p99_ms: 50, max_utilization: 0.8}}
power: {{pue: 1.3, host_w_per_node: 800}}
pools: {{admission: [paged], max_pools: 1}}
"""
TOPO = "4096:h100x1"
HOST_PER_GPU = 800 / 8


def write(tmp_path, rate=40.0, extra="", name="small.yaml") -> Path:
    p = tmp_path / name
    p.write_text(SMALL.format(rate=rate, extra=extra))
    return p


def profile_yaml(weights, idle="keep_idle") -> str:
    return f"  load_profile:\n    hourly_weights: {list(weights)}\n    idle_instances: {idle}\n"


def report(path, **kw):
    inst = load_instance(path)
    return energy_report(Problem.from_instance(inst), parse_topology(TOPO), **kw)


# ---- conservation ----------------------------------------------------------------------------

@pytest.mark.parametrize("extra", ["", profile_yaml([1.0] * 12 + [0.4] * 6 + [0.0] * 6)])
def test_energy_conservation(tmp_path, extra):
    r = report(write(tmp_path, extra=extra), keep_queries=True)
    q = r["queries_per_day"]
    # per-query energy x queries = daily energy, at both levels
    assert r["wh_per_query_facility"] * q == pytest.approx(r["mwh_per_day"] * 1e6, rel=1e-12)
    assert r["wh_per_query_it"] * q == pytest.approx(r["mwh_per_day_it"] * 1e6, rel=1e-12)
    # the hours and the pools add up to the day; the year is 365 days
    assert sum(h["mwh"] for h in r["hours"]) == pytest.approx(r["mwh_per_day"], rel=1e-12)
    assert sum(p["mwh_per_day"] for p in r["pools"]) == pytest.approx(r["mwh_per_day"], rel=1e-12)
    assert sum(h["queries_per_s"] * 3600 for h in r["hours"]) == pytest.approx(q, rel=1e-12)
    assert r["gwh_per_year"] == pytest.approx(r["mwh_per_day"] * 365 / 1000, rel=1e-12)
    # components: IT = GPUs + host + idle; facility = IT x PUE
    parts = r["wh_per_query_gpu"] + r["wh_per_query_host"] + r["wh_per_query_idle_instances"]
    assert parts == pytest.approx(r["wh_per_query_it"], rel=1e-12)
    assert r["wh_per_query_facility"] == pytest.approx(1.3 * r["wh_per_query_it"], rel=1e-12)
    # the per-query energies (slot-time shares) average to the fleet's figure
    e, w = r["queries"]["wh_facility"], r["queries"]["weight"]
    assert float(e @ w / w.sum()) == pytest.approx(r["wh_per_query_facility"], rel=1e-9)
    assert r["wh_per_query_facility_p25"] <= r["wh_per_query_facility_p50"] <= r["wh_per_query_facility_p75"]


# ---- PUE, host and idle by hand ----------------------------------------------------------------

def test_flat_day_pue_and_host_by_hand(tmp_path, cat):
    path = write(tmp_path, rate=40.0)
    inst = load_instance(path)
    ev = evaluate(inst, parse_topology(TOPO)).to_dict()
    (p,) = ev["pools"]
    r = report(path)
    rate = 40.0
    gpu_w = p["gpus"] * p["power_per_gpu_w"]                 # every GPU at the pool's mean-batch power
    host_w = p["gpus"] * 800 / 8                             # 800 W per 8-GPU node, pro rata
    assert r["queries_per_day"] == pytest.approx(rate * 86400)
    assert r["wh_per_query_gpu"] == pytest.approx(gpu_w / rate / 3600, rel=1e-9)
    assert r["wh_per_query_host"] == pytest.approx(host_w / rate / 3600, rel=1e-9)
    assert r["wh_per_query_idle_instances"] == 0.0
    assert r["wh_per_query_facility"] == pytest.approx(1.3 * (gpu_w + host_w) / rate / 3600, rel=1e-9)
    # the IT x PUE figure evaluate already reported, and 24 h of the facility power
    assert r["wh_per_query_facility"] == pytest.approx(ev["fleet"]["energy_per_query_wh"], rel=1e-9)
    assert r["mwh_per_day"] == pytest.approx(1.3 * (gpu_w + host_w) * 24 / 1e6, rel=1e-9)


def test_idle_instances_by_hand(tmp_path, cat):
    """One busy hour, 23 empty ones: the fleet is sized for the busy hour; kept idle, each
    of its N instances draws the GPU's idle W + the host share for 23 h; switched off, 0."""
    idle_w = cat.gpu("h100").idle_w
    rate = 40.0
    flat = write(tmp_path, rate=rate, name="flat.yaml")
    inst = load_instance(flat)
    (p,) = evaluate(inst, parse_topology(TOPO)).to_dict()["pools"]
    n, busy_w = p["instances"], p["it_power_kw"] * 1e3
    w = [1.0] + [0.0] * 23
    keep = report(write(tmp_path, rate=rate, extra=profile_yaml(w), name="keep.yaml"))
    off = report(write(tmp_path, rate=rate, extra=profile_yaml(w, "switch_off"), name="off.yaml"))
    q = rate * 3600                                          # the day's queries all come in the busy hour
    assert keep["queries_per_day"] == pytest.approx(q) and off["queries_per_day"] == pytest.approx(q)
    idle_wh = 23 * n * 1 * (idle_w + HOST_PER_GPU)           # 23 h x N instances x 1 GPU x (idle + host)
    assert keep["wh_per_query_idle_instances"] == pytest.approx(idle_wh / q, rel=1e-9)
    assert keep["wh_per_query_facility"] == pytest.approx(1.3 * (busy_w + idle_wh) / q, rel=1e-9)
    assert off["wh_per_query_idle_instances"] == 0.0
    assert off["wh_per_query_facility"] == pytest.approx(1.3 * busy_w / q, rel=1e-9)
    assert [h["idle_instances"] for h in keep["hours"]] == [0] + [n] * 23
    assert keep["peak_facility_power_mw"] == pytest.approx(1.3 * busy_w / 1e6, rel=1e-9)


def test_quieter_hours_need_fewer_instances(tmp_path, cat):
    """Half the load for 12 hours: those hours serve with the instances a half-rate fleet
    needs (evaluate at that rate); the rest of the peak fleet idles (GPU idle W + host
    share) or is switched off, which is the whole difference between the two days."""
    rate = 40.0
    w = [1.0] * 12 + [0.5] * 12
    keep = report(write(tmp_path, rate=rate, extra=profile_yaml(w), name="keep.yaml"))
    off = report(write(tmp_path, rate=rate, extra=profile_yaml(w, "switch_off"), name="off.yaml"))
    inst = load_instance(write(tmp_path, rate=rate / 2, name="half.yaml"))
    (half,) = evaluate(inst, parse_topology(TOPO)).to_dict()["pools"]
    spare = keep["instances_peak"] - half["instances"]
    assert spare > 0
    assert keep["hours"][12]["serving_instances"] == half["instances"]
    assert keep["hours"][12]["idle_instances"] == spare and off["hours"][12]["idle_instances"] == 0
    assert keep["queries_per_day"] == pytest.approx(rate * 3600 * 18)      # 12 h + 12 h at half the rate
    idle_gpu_w = cat.gpu("h100").idle_w + HOST_PER_GPU                    # one GPU per instance
    assert (keep["mwh_per_day"] - off["mwh_per_day"]) * 1e6 == pytest.approx(12 * spare * idle_gpu_w * 1.3, rel=1e-9)
    # a half-rate hour's serving power is what evaluate gives for the half-rate fleet
    assert off["hours"][12]["it_power_kw"] == pytest.approx(half["it_power_kw"], rel=1e-9)


def test_cost_and_emissions_by_hand(tmp_path):
    r = report(write(tmp_path), usd_per_mwh=80.0, gco2_per_kwh=400.0)
    mwh = r["mwh_per_day"]
    assert r["usd_per_day"] == pytest.approx(80.0 * mwh)
    assert r["usd_per_year"] == pytest.approx(80.0 * mwh * 365)
    assert r["tco2_per_day"] == pytest.approx(mwh * 1000 * 400 / 1e6)    # MWh -> kWh x g/kWh -> t
    assert r["gco2_per_query"] == pytest.approx(r["wh_per_query_facility"] / 1000 * 400, rel=1e-9)


def test_queries_per_day_overrides_the_rate(tmp_path):
    r = report(write(tmp_path, rate=40.0), queries_per_day=86400 * 10.0)
    assert r["peak_queries_per_s"] == pytest.approx(10.0)
    inst = load_instance(write(tmp_path, rate=10.0, name="ten.yaml"))
    ev = evaluate(inst, parse_topology(TOPO)).to_dict()
    assert r["wh_per_query_facility"] == pytest.approx(ev["fleet"]["energy_per_query_wh"], rel=1e-9)


# ---- output scale ----------------------------------------------------------------------------

def test_output_scale_against_hand_built_distribution(tmp_path):
    """Two points (201, 101) and (801, 301), each half the requests; x 3 outputs are 303
    and 903, inputs and weights unchanged, total-token keys 504 and 1704."""
    base = write(tmp_path)
    inst = load_instance(base, ["workload.output_scale=3"])
    d, rate = workload_of(inst)
    assert rate == 40.0
    assert d.inp.tolist() == [201.0, 801.0]
    assert d.out.tolist() == [303.0, 903.0]
    assert d.w.tolist() == [0.5, 0.5]
    assert d.key.tolist() == [504.0, 1704.0]
    assert d.mean_output == pytest.approx(3 * (101 + 301) / 2)
    # routed by input, the keys do not move
    inst = load_instance(base, ["workload.output_scale=3", "workload.routing_key=input"])
    d, _ = workload_of(inst)
    assert d.key.tolist() == [201.0, 801.0] and d.out.tolist() == [303.0, 903.0]
    # a scale below 1 shortens outputs (never below one token)
    inst = load_instance(base, ["workload.output_scale=0.001"])
    assert Problem.from_instance(inst).dist.out.tolist() == [1.0, 1.0]


def test_mixture_with_a_long_query_share(tmp_path):
    """90 % chat, 10 % the same chat with outputs x 15: the mean output is
    0.9 x 201 + 0.1 x 15 x 201 = 482.4 (chat mean output (101 + 301) / 2 = 201)."""
    cells = "[[200, 202, 100, 102, 0.5], [800, 802, 300, 302, 0.5]]"
    mix = (f"workload:\n  distribution:\n    type: mixture\n    components:\n"
           f"      chat: {{weight: 0.9, workload: {{type: histogram, points_per_dim: 1, cells: {cells}}}}}\n"
           f"      long: {{weight: 0.1, output_scale: 15, workload: {{type: histogram, points_per_dim: 1, "
           f"cells: {cells}}}}}\n  arrival_rate: 10\n")
    p = tmp_path / "mix.yaml"
    p.write_text(f"name: mix\nmodel: llama-3.1-8b\ngpus: [h100]\n{mix}")
    inst = load_instance(p)
    d, _ = workload_of(inst)
    assert d.mean_output == pytest.approx(0.9 * 201 + 0.1 * 15 * 201)
    assert sorted(d.out.tolist()) == [101.0, 301.0, 1515.0, 4515.0]
    assert d.w[d.out == 4515.0].sum() == pytest.approx(0.05)
    inst = load_instance(p, ["workload.output_scale=2"])       # the global factor applies on top
    assert Problem.from_instance(inst).dist.mean_output == pytest.approx(2 * (0.9 * 201 + 0.1 * 15 * 201))


def test_output_scale_as_a_sweep_axis(tmp_path):
    import pandas as pd

    from fleetopt.sweeps import run_sweep

    base = write(tmp_path, rate=20.0)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"schema_version: 1\nname: tts\nbase: {base}\ngrid:\n  workload.output_scale: [1, 4]\n")
    res = run_sweep(str(spec), str(tmp_path / "out"))
    assert res["done"] == 2 and res["failed"] == 0
    df = pd.read_parquet(tmp_path / "out" / "cases").sort_values("axis:workload.output_scale")
    e = df["energy_per_query_wh"].tolist()
    # 4x the output tokens: more than twice the energy per query (decode dominates a chat
    # query), less than 4x plus the longer contexts' KV traffic
    assert 2 * e[0] < e[1] < 6 * e[0]


def test_bad_output_scale_and_profile_name_the_field(tmp_path):
    from fleetopt import FleetoptError

    base = write(tmp_path)
    with pytest.raises(FleetoptError, match="workload.output_scale: must be > 0"):
        load_instance(base, ["workload.output_scale=0"])
    with pytest.raises(FleetoptError, match="workload.load_profile.hourly_weights"):
        load_instance(base, ["workload.load_profile.hourly_weights=[1, 2]"])
    with pytest.raises(FleetoptError, match="workload.load_profile: at least one hourly weight"):
        load_instance(base, [f"workload.load_profile.hourly_weights={[0] * 24}"])


# ---- energy map ------------------------------------------------------------------------------

def test_energy_map_json_keys_and_peak_location(capsys):
    assert main(["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--tp", "1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 10 * 10                              # 64..32768 x 16..8192, powers of two
    for k in ("input_tokens", "output_tokens", "j_per_output_token", "j_per_token", "wh_per_query", "batch",
              "fits", "peak", "efficient_region"):
        assert k in rows[0]
    fit = [r for r in rows if r["fits"]]
    peaks = [r for r in rows if r["peak"]]
    assert len(peaks) == 1
    p = peaks[0]
    assert p["j_per_output_token"] == min(r["j_per_output_token"] for r in fit)
    # the Sweet Spots regime: short-to-moderate input, medium output ...
    assert p["input_tokens"] <= 4096 and 64 <= p["output_tokens"] <= 2048
    cell = {(r["input_tokens"], r["output_tokens"]): r for r in rows}
    # ... long inputs and very short outputs clearly worse
    assert cell[(32768, p["output_tokens"])]["j_per_output_token"] > 3 * p["j_per_output_token"]
    assert cell[(p["input_tokens"], 16)]["j_per_output_token"] > 1.1 * p["j_per_output_token"]
    for r in fit:                                            # the three figures of one cell agree
        i, o, j = r["input_tokens"], r["output_tokens"], r["j_per_output_token"]
        assert r["j_per_token"] == pytest.approx(j * o / (i + o), rel=1e-5)
        assert r["wh_per_query"] == pytest.approx(j * o / 3600, rel=1e-5)


def test_energy_map_cells_that_do_not_fit_are_rows_not_errors():
    from fleetopt.energy_map import energy_map
    from fleetopt.profiles import make_profile

    prof = make_profile("physical", "llama-3.1-405b-fp8", "h100", 8)
    rows = energy_map(prof, [512, 32768], [64, 8192], batch=256)
    cell = {(r["input_tokens"], r["output_tokens"]): r for r in rows}
    assert cell[(512, 64)]["fits"] and cell[(512, 64)]["batch"] == 256
    assert not cell[(32768, 8192)]["fits"]                   # 256 x 37K tokens exceed the KV cache
    assert "KV cache" in cell[(32768, 8192)]["note"] and cell[(32768, 8192)]["batch"] == 0


def test_energy_map_tpot_batch_meets_the_target():
    from fleetopt.energy_map import energy_map
    from fleetopt.profiles import make_profile

    prof = make_profile("physical", "llama-3.1-70b", "h100", 8)
    for r in energy_map(prof, [256, 4096], [128, 1024], tpot_ms=40.0):
        assert r["fits"] and r["step_ms"] <= 40.0
        if r["batch"] < r["kv_batch_cap"]:                   # one more sequence would miss TPOT
            assert prof.steady_state(r["batch"] + 1, r["input_tokens"], r["output_tokens"]).step_ms > 40.0


def test_energy_map_out_writes_png_and_never_overwrites(tmp_path):
    out = tmp_path / "map"
    args = ["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--inputs", "64,1024", "--outputs", "16,256",
            "--out", str(out), "--format", "json"]
    assert main(args) == 0
    png = (out / "energy_map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((out / "energy_map.json").read_text())) == 4
    code, _, err = run(*args)
    assert code == 2 and "pass --force" in err
    assert main(args + ["--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["energy_map.json", "energy_map.png"]   # no temporaries left


# ---- the energy command ----------------------------------------------------------------------

def run(*args):
    p = subprocess.run([sys.executable, "-m", "fleetopt", *args], capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr


def test_energy_json_keys_and_plan_file(tmp_path, capsys):
    path = write(tmp_path)
    assert main(["energy", str(path), "--topology", TOPO, "--usd-per-mwh", "80", "--gco2-per-kwh", "300",
                 "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("wh_per_query_it", "wh_per_query_facility", "mwh_per_day", "gwh_per_year", "usd_per_day",
              "tco2_per_day", "pools", "hours"):
        assert k in d
    assert d["wh_per_query_facility"] > d["wh_per_query_it"] > 0
    # solved first when no plan is given; a plan.json from solve --out gives the same figures
    assert main(["solve", str(path), "--out", str(tmp_path / "plan"), "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["energy", str(path), "--plan", str(tmp_path / "plan" / "plan.json"), "--format", "json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["energy", str(path), "--format", "json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["topology"] == b["topology"] and a["mwh_per_day"] == b["mwh_per_day"]
    assert main(["energy", str(path), "--topology", TOPO, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "wh_per_query_facility" in lines[0]


@pytest.mark.parametrize("args,needle", [
    (["energy", "{inst}", "--topology", TOPO, "--queries-per-day", "-5"], "--queries-per-day: must be"),
    (["energy", "{inst}", "--topology", TOPO, "--queries-per-day", "0"], "--queries-per-day: must be > 0"),
    (["energy", "{inst}", "--topology", TOPO, "--usd-per-mwh", "-1"], "--usd-per-mwh: must be >= 0"),
    (["energy", "{inst}", "--plan", "{tmp}/none.json"], "--plan: no such file"),
    (["energy", "{inst}", "--plan", "{tmp}/bad.json"], "--plan:"),
    (["energy", "{inst}", "--plan", "{tmp}/bad.json", "--topology", TOPO], "at most one of --plan or --topology"),
    (["energy", "{inst}", "--plan", "{tmp}/other.json"], "was solved for llama-3.1-70b"),
    (["energy", "{inst}", "--set", "workload.output_scale=-2"], "workload.output_scale: must be > 0"),
    (["energy-map", "--model", "nope", "--gpu", "h100"], "unknown model 'nope'"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--inputs", ""], "--inputs"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--outputs", ","], "--outputs"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--outputs", "64,-8"], "--outputs: every length"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "0"], "--batch: must be > 0"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "8", "--tpot-ms", "30"], "at most one"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, needle):
    inst = write(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"topology": TOPO, "model": "llama-3.1-70b"}))
    code, _, err = run(*[a.format(inst=inst, tmp=tmp_path) for a in args])
    assert code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
