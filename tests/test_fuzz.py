"""Malformed input to every command: each ends in exit status 2 and ONE line on stderr that
names the field (or option, file and line) and what was wrong; no traceback; nothing
written.  Run in process (``fleetopt.cli.main``), in an empty working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetopt.cli import main

INST = Path(__file__).resolve().parents[1] / "instances"
AZ = str(INST / "azure-conv-h100.yaml")          # a histogram instance
PAPER = str(INST / "paper-azure-h100.yaml")      # CDF knots
MIX = str(INST / "heterogeneous.yaml")           # a mixture of two histograms
M70 = ["--model", "llama-3.1-70b", "--gpu", "h100"]

# Small files the cases below refer to by name (written into the working folder first).
FILES = {
    "tiny.yaml": "schema_version: 1\nname: tiny\nmodel: llama-3.1-8b\ngpus: [{id: h100, tp: [1]}]\n"
                 "workload:\n  distribution: {type: lognormal, input_median: 500, input_sigma: 0.5, "
                 "output_median: 200, output_sigma: 0.5}\n  arrival_rate: 5\n"
                 "slo: {ttft_p99_ms: 2000, tpot_p99_ms: 100}\n",
    "dup.yaml": "model: llama-3.1-8b\ngpus: [h100]\nmodel: llama-3.1-70b\n",
    "list.yaml": "- 1\n- 2\n",
    "broken.yaml": "model: [unclosed\n",
    "trace_neg.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,100,20\n0.5,-3,20\n1.0,50,10\n",
    "trace_frac.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,100,20\n0.5,100,20.5\n",
    "trace_text.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,100,20\n0.5,many,20\n",
    "trace_nocol.csv": "TIMESTAMP,Prompt,GeneratedTokens\n0.0,100,20\n",
    "trace_time.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,100,20\nyesterday,100,20\n",
    "trace_empty.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n",
    "hist_bad.csv": "input_bin_lo,input_bin_hi,output_bin_lo,output_bin_hi,fraction\n0,100,0,50,0.5\n100,50,0,50,0.5\n",
    "hist_sum.csv": "input_bin_lo,input_bin_hi,output_bin_lo,output_bin_hi,fraction\n0,100,0,50,0.5\n100,200,0,50,0.3\n",
    "hist_nan.csv": "input_bin_lo,input_bin_hi,output_bin_lo,output_bin_hi,fraction\n0,100,0,50,nan\n",
    "cdf_bad.csv": "total_tokens_le,cumulative_fraction\n100,0.5\n200,0.4\n300,1.0\n",
    "cdf_nocol.csv": "tokens,cumulative_fraction\n100,1.0\n",
    "cdf_end.csv": "total_tokens_le,cumulative_fraction\n100,0.5\n200,0.9\n",
    "plan_bad.json": "{not json",
    "plan_nokey.json": "{\"pools\": []}\n",
    "plan_num.json": "{\"topology\": 5}\n",
    "plan_list.json": "[1, 2]\n",
    "cat_bad.yaml": "gpus:\n  - {id: h100, idle_w: 900}\n",
    "cat_dup.yaml": "gpus:\n  - {id: h100, tdp_w: 700, tdp_w: 800}\n",
    "report/cases/x.parquet": "not parquet",
    "existing.csv": "already here\n",
    "a_file": "x\n",
    "foreign/notes.txt": "mine\n",
    "plan/plan.json": "{}\n",
    "jr/s.journal": "{\"op_code\": 0}\nnot json\n{\"op_code\": 0}\n",
    "inst_dir/.keep": "",
    "cal_bounds.yaml": "coefficients: {eta_bw: 3}\n",
    "cal_name.yaml": "coefficients: {eta_bandwidth: 0.9}\n",
    "cal_type.yaml": "coefficients: {eta_bw: fast}\n",
    "cal_none.yaml": "fleetopt_calibration: 1\n",
    "meas_cols.csv": "gpu,model,tp,batch,output_tokens\nh100,llama-3.1-8b,1,8,100\n",
}


def trace_inst(csv: str, extra: str = "") -> str:
    name = f"t_{csv.split('.')[0]}.yaml"
    FILES[name] = (f"model: llama-3.1-8b\ngpus: [{{id: h100, tp: [1]}}]\nworkload:\n  distribution: "
                   f"{{type: trace, path: {csv}{extra}}}\n  arrival_rate: 5\n")
    return name


def dist_inst(name: str, dist: str) -> str:
    FILES[name] = (f"model: llama-3.1-8b\ngpus: [{{id: h100, tp: [1]}}]\nworkload:\n  distribution: {dist}\n"
                   f"  arrival_rate: 5\n")
    return name


def spec(name: str, body: str) -> str:
    FILES[name] = f"schema_version: 1\nname: {name.split('.')[0]}\n{body}"
    return name


def solve_set(*sets: str) -> list[str]:
    return ["solve", AZ, *(x for s in sets for x in ("--set", s))]


# (argv, text the one line must contain)
CASES: list[tuple[list[str], str]] = [
    # ---- law ---------------------------------------------------------------------------
    (["law", "--model", "llama-9", "--gpu", "h100"], "unknown model 'llama-9'"),
    (["law", "--model", "llama-3.1-70b", "--gpu", "h999"], "unknown GPU 'h999'"),
    (["law", *M70, "--tp", "3"], "tp 3 does not divide"),
    (["law", *M70, "--tp", "0"], "tp must be >= 1"),
    (["law", *M70, "--tp", "-8"], "tp must be >= 1"),
    (["law", *M70, "--tp", "two"], "--tp"),
    (["law", *M70, "--tp", "8", "--contexts", "4k"], "contexts"),
    (["law", *M70, "--tp", "8", "--contexts", ","], "contexts"),
    (["law", *M70, "--tp", "8", "--contexts", "0"], "contexts"),
    (["law", *M70, "--tp", "8", "--contexts", "-4096"], "contexts"),
    (["law", *M70, "--tp", "8", "--output-tokens", "0"], "output-tokens"),
    (["law", *M70, "--tp", "8", "--output-tokens", "-1"], "output-tokens"),
    (["law", *M70, "--tp", "8", "--contexts", "512", "--output-tokens", "512"], "output-tokens"),
    (["law", *M70, "--tp", "8", "--power-cap-w", "nan"], "power-cap-w"),
    (["law", *M70, "--tp", "8", "--power-cap-w", "inf"], "power-cap-w"),
    (["law", *M70, "--tp", "8", "--power-cap-w", "-5"], "power-cap-w"),
    (["law", *M70, "--tp", "8", "--power-cap-w", "20"], "idle power"),
    (["law", *M70, "--tp", "8", "--gpu-memory-utilization", "0"], "gpu-memory-utilization"),
    (["law", *M70, "--tp", "8", "--gpu-memory-utilization", "1.5"], "gpu-memory-utilization"),
    (["law", *M70, "--tp", "8", "--gpu-memory-utilization", "nan"], "gpu-memory-utilization"),
    (["law", *M70, "--tp", "8", "--mode", "exact"], "--mode"),
    (["law", *M70, "--tp", "8", "--admission", "lazy"], "--admission"),
    (["law", *M70, "--tp", "8", "--format", "xml"], "--format"),
    (["law", "--model", "llama-3.1-405b", "--gpu", "h100", "--tp", "2"], "does not fit"),
    (["law", "--gpu", "h100"], "--model"),
    # ---- estimate ----------------------------------------------------------------------
    (["estimate", *M70, "--tp", "8", "--batch", "0", "--prompt-tokens", "10", "--output-tokens", "10"], "batch"),
    (["estimate", *M70, "--tp", "8", "--batch", "8", "--prompt-tokens", "-4", "--output-tokens", "10"],
     "prompt-tokens"),
    (["estimate", *M70, "--tp", "8", "--batch", "8", "--prompt-tokens", "10", "--output-tokens", "0"],
     "output-tokens"),
    (["estimate", *M70, "--tp", "8", "--batch", "100000", "--prompt-tokens", "4000", "--output-tokens", "1000"],
     "does not fit"),
    (["estimate", *M70, "--tp", "3", "--batch", "8", "--prompt-tokens", "10", "--output-tokens", "10"],
     "does not divide"),
    (["estimate", *M70, "--tp", "8", "--batch", "8", "--prompt-tokens", "10", "--output-tokens", "10",
      "--power-cap-w", "1"], "idle power"),
    (["estimate", *M70, "--tp", "8", "--batch", "8", "--prompt-tokens", "10"], "--output-tokens"),
    # ---- catalog -----------------------------------------------------------------------
    (["catalog", "tpus"], "tpus"),
    (["catalog", "gpus", "--format", "yaml"], "--format"),
    (["--catalog", "missing.yaml", "catalog", "gpus"], "missing.yaml"),
    (["--catalog", "broken.yaml", "catalog", "gpus"], "not valid YAML"),
    (["--catalog", "cat_bad.yaml", "catalog", "gpus"], "idle_w"),
    (["--catalog", "cat_dup.yaml", "catalog", "gpus"], "duplicate key 'tdp_w'"),
    (["--catalog", "list.yaml", "catalog", "gpus"], "mapping"),
    (["nosuch"], "No such command"),
    # ---- instance files ----------------------------------------------------------------
    (["solve", "missing.yaml"], "no such instance file"),
    (["solve", "broken.yaml"], "not valid YAML"),
    (["solve", "list.yaml"], "must be a YAML mapping"),
    (["solve", "dup.yaml"], "duplicate key 'model'"),
    (["solve", "inst_dir"], "inst_dir"),
    # ---- solve: --set syntax and values --------------------------------------------------
    (["solve", AZ, "--set", "workload.arrival_rate"], "expected key.path=value"),
    (["solve", AZ, "--set", "=5"], "empty key path"),
    (solve_set("gpus.7.tp=[8]"), "'7' is not an index"),
    (solve_set("workload.arrival_rate=.inf"), "workload.arrival_rate: must be a finite number, got inf"),
    (solve_set("workload.arrival_rate=-.inf"), "workload.arrival_rate"),
    (solve_set("workload.arrival_rate=.nan"), "workload.arrival_rate"),
    (solve_set("workload.arrival_rate=inf"), "workload.arrival_rate: must be a finite number"),
    (solve_set("workload.arrival_rate=-5"), "workload.arrival_rate: must be > 0, got -5"),
    (solve_set("workload.arrival_rate=0"), "workload.arrival_rate: must be > 0"),
    (solve_set("workload.arrival_rate=lots"), "workload.arrival_rate"),
    (solve_set("workload.arival_rate=5"), "workload.arival_rate: is not a known field"),
    (solve_set("workload.distribution.cells.0=[1,128,1,64,-0.5]"), "workload.distribution.cells.0.4"),
    (solve_set("workload.distribution.cells.0=[1,128,1,64,1.5]"), "workload.distribution.cells.0.4"),
    (solve_set("workload.distribution.cells.0=[128,1,1,64,0.1]"), "workload.distribution.cells.0.1: input bin"),
    (solve_set("workload.distribution.cells.0=[1,128,64,64,0.1]"), "workload.distribution.cells.0.3: output bin"),
    (solve_set("workload.distribution.cells.0=[-1,128,1,64,0.1]"), "workload.distribution.cells.0.0"),
    (solve_set("workload.distribution.cells.0=[1,128,1,64]"), "workload.distribution.cells.0"),
    (solve_set("workload.distribution.cells.0=[1,128,1,.inf,0.1]"), "workload.distribution.cells.0.3"),
    (solve_set("workload.distribution.cells=[[1,128,1,64,0.5]]"), "workload.distribution.cells: fractions must sum to 1"),
    (solve_set("workload.distribution.cells=[]"), "workload.distribution.cells"),
    (solve_set("workload.distribution.points_per_dim=0"), "workload.distribution.points_per_dim"),
    (solve_set("workload.distribution.type=zipf"), "workload.distribution.type: must be one of"),
    (solve_set("workload.routing_key=output"), "workload.routing_key"),
    (solve_set("workload.max_output_tokens=0"), "workload.max_output_tokens"),
    (solve_set("model=llama-9"), "model: unknown model 'llama-9'"),
    (solve_set("model=7"), "model"),
    (solve_set("gpus.0.id=h999"), "gpus.0.id: unknown GPU 'h999'"),
    (solve_set("gpus.0.tp=[3]"), "gpus.0.tp.0: tp 3 does not divide"),
    (solve_set("gpus.0.tp=[0]"), "gpus.0.tp.0: must be >= 1"),
    (solve_set("gpus.0.tp=[]"), "gpus.0.tp"),
    (solve_set("gpus.1.id=h100"), "gpus.1.id"),
    (solve_set("gpus.0.max_gpus=-1"), "gpus.0.max_gpus"),
    (solve_set("gpus.0.usd_per_gpu_hour=.nan"), "gpus.0.usd_per_gpu_hour"),
    (solve_set("gpus=[]"), "gpus: must have at least 1"),
    (solve_set("serving.power_cap_w=10"), "serving.power_cap_w: must be at least the idle power"),
    (solve_set("serving.power_cap_w=.inf"), "serving.power_cap_w: must be a finite number"),
    (solve_set("serving.power_cap_w=-300"), "serving.power_cap_w"),
    (solve_set("serving.gpu_memory_utilization=1.2"), "serving.gpu_memory_utilization"),
    (solve_set("serving.max_num_seqs=0"), "serving.max_num_seqs"),
    (solve_set("serving.chunk_tokens=4"), "serving.chunk_tokens"),
    (solve_set("power.facility_cap_mw=.inf"), "power.facility_cap_mw: must be a finite number"),
    (solve_set("power.facility_cap_mw=-1"), "power.facility_cap_mw"),
    (solve_set("power.pue=.nan"), "power.pue"),
    (solve_set("power.pue=0.5"), "power.pue: must be >= 1"),
    (solve_set("power.host_w_per_node=-1"), "power.host_w_per_node"),
    (solve_set("power.provisioning=max"), "power.provisioning"),
    (solve_set("pools.boundaries=[4096, 1024]"), "pools.boundaries.1: boundaries must be ascending"),
    (solve_set("pools.boundaries=[0, 1024]"), "pools.boundaries.0: must be > 0"),
    (solve_set("pools.boundaries=[1024, 1024]"), "pools.boundaries.1"),
    (solve_set("pools.boundaries=[]"), "pools.boundaries"),
    (solve_set("pools.boundaries=[1024, 99999]"), "pools.boundaries.1: 99999 is above pools.max_window"),
    (solve_set("pools.boundaries=some"), "pools.boundaries"),
    (solve_set("pools.max_pools=0"), "pools.max_pools"),
    (solve_set("pools.max_window=0"), "pools.max_window"),
    (solve_set("pools.admission=[]"), "pools.admission"),
    (solve_set("pools.admission=[lazy]"), "pools.admission"),
    (solve_set("pools.auto_count=0"), "pools.auto_count"),
    (solve_set("pools.split_grid=9"), "pools.split_grid"),
    (solve_set("pools.compress.gamma=0.5"), "pools.compress.gamma"),
    (solve_set("pools.compress.success=1.5"), "pools.compress.success"),
    (solve_set("slo.ttft_p99_ms=-1"), "slo.ttft_p99_ms"),
    (solve_set("slo.ttft_p99_ms=.inf"), "slo.ttft_p99_ms: must be a finite number"),
    (solve_set("slo.tpot_p99_ms=0"), "slo.tpot_p99_ms"),
    (solve_set("slo.max_utilization=0"), "slo.max_utilization"),
    (solve_set("slo.max_utilization=1.5"), "slo.max_utilization"),
    (solve_set("solver.time_limit_s=.inf"), "solver.time_limit_s: must be a finite number"),
    (solve_set("solver.time_limit_s=0"), "solver.time_limit_s"),
    (solve_set("solver.mip_gap=-1"), "solver.mip_gap"),
    (solve_set("solver.threads=0"), "solver.threads"),
    (solve_set("solver.interface=gurobi"), "solver.interface"),
    (solve_set("mode=exact"), "mode: must be one of"),
    (solve_set("objective=fastest"), "objective: must be one of"),
    (solve_set("schema_version=2"), "schema_version"),
    (solve_set("colour=red"), "colour: is not a known field"),
    (solve_set("workload={}"), "workload.distribution: is required"),
    (["solve", PAPER, "--set", "workload.distribution.knots.2.1=0.01"],
     "workload.distribution.knots.2.1: cumulative fraction must not decrease"),
    (["solve", PAPER, "--set", "workload.distribution.knots.2.0=100"], "workload.distribution.knots.2.0: tokens must increase"),
    (["solve", PAPER, "--set", "workload.distribution.knots=[[100, 0.5], [200, 0.9]]"],
     "workload.distribution.knots.1.1: the last knot's cumulative fraction must be 1, got 0.9"),
    (["solve", PAPER, "--set", "workload.distribution.knots.0.0=-64"], "workload.distribution.knots.0.0"),
    (["solve", PAPER, "--set", "workload.distribution.knots.0.1=1.5"], "workload.distribution.knots.0.1"),
    (["solve", PAPER, "--set", "workload.distribution.knots=[]"], "workload.distribution.knots"),
    (["solve", PAPER, "--set", "workload.distribution.input_share=1.2"], "workload.distribution.input_share"),
    (["solve", PAPER, "--set", "workload.distribution.samples=5"], "workload.distribution.samples"),
    (["solve", MIX, "--set", "workload.distribution.components.code.weight=0.5"],
     "workload.distribution.components: the weights must sum to 1"),
    (["solve", MIX, "--set", "workload.distribution.components.code.weight=-0.3"],
     "workload.distribution.components.code.weight: must be >= 0"),
    (["solve", MIX, "--set", "workload.distribution.components.code.weight=1.313"],
     "workload.distribution.components.code.weight: must be <= 1"),
    (["solve", MIX, "--set", "workload.distribution.components.code.workload.cells.0.4=-1"],
     "workload.distribution.components.code.workload.cells.0.4"),
    (["solve", MIX, "--set", "workload.distribution.components={}"], "workload.distribution.components"),
    (["solve", "tiny.yaml", "--set", "workload.distribution.input_sigma=-1"], "workload.distribution.input_sigma"),
    (["solve", "tiny.yaml", "--set", "workload.distribution.input_median=0"], "workload.distribution.input_median"),
    # ---- solve: files an instance reads ------------------------------------------------
    (["solve", trace_inst("trace_neg.csv")], "'trace_neg.csv' line 3: ContextTokens must be a non-negative integer"),
    (["solve", trace_inst("trace_frac.csv")], "'trace_frac.csv' line 3: GeneratedTokens must be a non-negative integer"),
    (["solve", trace_inst("trace_text.csv")], "'trace_text.csv' line 3: ContextTokens"),
    (["solve", trace_inst("trace_nocol.csv")], "no column 'ContextTokens'"),
    (["solve", trace_inst("trace_time.csv")], "'trace_time.csv' line 3: TIMESTAMP must be a date-time"),
    (["solve", trace_inst("trace_empty.csv")], "'trace_empty.csv' has no requests"),
    (["solve", trace_inst("trace_gone.csv")], "workload.distribution.path: no such file"),
    (["solve", dist_inst("h1.yaml", "{type: histogram, path: hist_bad.csv}")],
     "workload.distribution.path: 'hist_bad.csv' line 3: input bin must have lo < hi"),
    (["solve", dist_inst("h2.yaml", "{type: histogram, path: hist_sum.csv}")],
     "workload.distribution.path: 'hist_sum.csv': fractions must sum to 1"),
    (["solve", dist_inst("h3.yaml", "{type: histogram, path: hist_nan.csv}")], "'hist_nan.csv' line 2: fraction"),
    (["solve", dist_inst("h4.yaml", "{type: histogram, path: hist_sum.csv, dataset: azure}")],
     "no column 'dataset'"),
    (["solve", dist_inst("h5.yaml", "{type: histogram, path: nowhere.csv}")], "workload.distribution.path: no such file"),
    (["solve", dist_inst("h6.yaml", "{type: histogram}")], "workload.distribution: give exactly one of 'cells' or 'path'"),
    (["solve", dist_inst("c1.yaml", "{type: cdf, path: cdf_bad.csv}")],
     "'cdf_bad.csv' line 3: cumulative fraction must not decrease"),
    (["solve", dist_inst("c2.yaml", "{type: cdf, path: cdf_nocol.csv}")], "no column 'total_tokens_le'"),
    (["solve", dist_inst("c3.yaml", "{type: cdf, path: cdf_end.csv}")],
     "'cdf_end.csv' line 3: the last knot's cumulative fraction must be 1"),
    # ---- solve: --out ------------------------------------------------------------------
    (["solve", "tiny.yaml", "--out", "a_file"], "'--out': Directory 'a_file' is a file"),
    (["solve", "tiny.yaml", "--out", "foreign"], "--out: 'foreign' holds files fleetopt did not write (notes.txt)"),
    (["solve", "tiny.yaml", "--out", "plan"], "--out: plan/plan.json exists; pass --force"),
    (["solve", "tiny.yaml", "--workers", "0"], "--workers"),
    (["solve", "tiny.yaml", "--seed", "-1"], "--seed"),
    (["solve", "tiny.yaml", "--verify", "--requests", "5"], "--requests"),
    # ---- evaluate ----------------------------------------------------------------------
    (["evaluate", AZ, "--topology", "16k:h100"], "llama-3.1-70b does not fit on 1 x h100-sxm"),
    (["evaluate", AZ, "--topology", "4096-h100x8"], "topology pool 1 '4096-h100x8'"),
    (["evaluate", AZ, "--topology", ","], "topology: no pools given"),
    (["evaluate", AZ, "--topology", "8192:h100x8,4096:h100x8"], "pool upper bounds must be positive and ascending"),
    (["evaluate", AZ, "--topology", "4096:h100x8@0.5,16384:h100x8"], "shares of the pool ending at 4096 sum to 0.5"),
    (["evaluate", AZ, "--topology", "16384:h100x8@0"], "share must be in (0, 1]"),
    (["evaluate", AZ, "--topology", "16384:h999x8"], "unknown GPU 'h999'"),
    (["evaluate", AZ, "--topology", "16384:h100x3"], "tp 3 does not divide"),
    (["evaluate", AZ, "--topology", "16384:h100x8", "--admission", "lazy"], "--admission"),
    (["evaluate", AZ, "--topology", "16384:h100x8", "--set", "model=llama-9"], "model: unknown model"),
    (["evaluate", AZ], "--topology"),
    # ---- simulate ----------------------------------------------------------------------
    (["simulate", "tiny.yaml"], "give exactly one of --plan or --topology"),
    (["simulate", "tiny.yaml", "--plan", "plan_bad.json", "--topology", "4096:h100"], "exactly one of"),
    (["simulate", "tiny.yaml", "--plan", "nowhere.json"], "--plan: no such file"),
    (["simulate", "tiny.yaml", "--plan", "plan_bad.json"], "--plan: 'plan_bad.json' is not a plan.json"),
    (["simulate", "tiny.yaml", "--plan", "plan_nokey.json"], "--plan: 'plan_nokey.json' is not a plan.json"),
    (["simulate", "tiny.yaml", "--plan", "plan_num.json"], "--plan: 'plan_num.json' is not a plan.json"),
    (["simulate", "tiny.yaml", "--plan", "plan_list.json"], "--plan: 'plan_list.json' is not a plan.json"),
    (["simulate", "tiny.yaml", "--plan", "inst_dir"], "--plan: cannot read 'inst_dir'"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--requests", "10"], "--requests"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--requests", "1000000000000"], "--requests"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--seed", "-3"], "--seed"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--trace-out", "existing.csv"],
     "--trace-out: existing.csv exists; pass --force"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--trace-out", "inst_dir", "--force"], "--trace-out"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--repair", "--trace-out", "t.csv"], "--repair"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--arrivals", "trace"],
     "--arrivals trace: the instance's workload must be a trace"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--arrivals", "burst"], "--arrivals"),
    (["simulate", "tiny.yaml", "--topology", "8192:h100", "--set", "serving.power_cap_w=.nan"],
     "serving.power_cap_w"),
    # ---- refine ------------------------------------------------------------------------
    (["refine", "tiny.yaml", "--trials", "0"], "--trials"),
    (["refine", "tiny.yaml", "--timeout", "0"], "--timeout"),
    (["refine", "tiny.yaml", "--timeout", "nan"], "--timeout"),
    (["refine", "tiny.yaml", "--pareto", "latency"], "--pareto"),
    (["refine", "tiny.yaml", "--seed", "-1"], "--seed"),
    (["refine", "tiny.yaml", "--storage", "inst_dir"], "--storage: "),
    (["refine", "tiny.yaml", "--storage", "sqlite:///no/such/dir/o.db"], "--storage: "),
    (["refine", "tiny.yaml", "--storage", "jr/s.journal"], "is corrupt at line 2"),
    (["refine", "tiny.yaml", "--set", "objective=max_throughput"], "objective: refine supports"),
    (["refine", "tiny.yaml", "--set", "model=llama-9"], "model: unknown model"),
    # ---- sweep -------------------------------------------------------------------------
    (["sweep", "nospec.yaml", "--out", "o"], "no such sweep spec"),
    (["sweep", "list.yaml", "--out", "o"], "must be a YAML mapping"),
    (["sweep", spec("s1.yaml", "base: tiny.yaml\n"), "--out", "o"], "exactly one of 'grid', 'cases' or 'random'"),
    (["sweep", spec("s2.yaml", "base: gone.yaml\ngrid: {workload.arrival_rate: [1, 2]}\n"), "--out", "o"],
     "base: "),
    (["sweep", spec("s3.yaml", "base: tiny.yaml\ngrid: {workload.arival_rate: [1, 2]}\n"), "--out", "o"],
     "case 1 (workload.arival_rate=1): workload.arival_rate: is not a known field"),
    (["sweep", spec("s4.yaml", "base: tiny.yaml\ngrid: {workload.arrival_rate: [1, -2]}\n"), "--out", "o"],
     "case 2 (workload.arrival_rate=-2): workload.arrival_rate: must be > 0"),
    (["sweep", spec("s5.yaml", "base: tiny.yaml\ngrid: {workload.arrival_rate: []}\n"), "--out", "o"], "grid"),
    (["sweep", spec("s6.yaml", "base: tiny.yaml\ngrid: {model: [llama-9]}\n"), "--out", "o"], "unknown model 'llama-9'"),
    (["sweep", spec("s7.yaml", "base: tiny.yaml\ngrid: {gpus.0.tp: [[1], [3]]}\n"), "--out", "o"],
     "case 2 (gpus.0.tp=[3]): gpus.0.tp.0: tp 3 does not divide"),
    (["sweep", spec("s8.yaml", "base: tiny.yaml\ngrid: {workload.arrival_rate: [5, 5.0]}\n"), "--out", "o"],
     "the same problem as case 1"),
    (["sweep", spec("s9.yaml", "base: tiny.yaml\nrandom: {samples: 3, ranges: {workload.arrival_rate: [9, 1]}}\n"),
      "--out", "o"], "random.ranges.workload.arrival_rate: must be [lo, hi] with lo <= hi"),
    (["sweep", spec("s10.yaml", "base: tiny.yaml\ncases: [{slo.ttft_p99_ms: .inf}]\n"), "--out", "o"],
     "slo.ttft_p99_ms: must be a finite number"),
    (["sweep", spec("s11.yaml", "base: tiny.yaml\ninstances: inst_dir\ngrid: {workload.arrival_rate: [1]}\n"),
      "--out", "o"], "exactly one of 'base' or 'instances'"),
    (["sweep", spec("s12.yaml", "instances: inst_dir\n"), "--out", "o"], "instances: no .yaml files"),
    (["sweep", spec("s13.yaml", "base: tiny.yaml\ngrid: {workload.arrival_rate: [1]}\ngrid: {x: [1]}\n"),
      "--out", "o"], "duplicate key 'grid'"),
    (["sweep", spec("s14.yaml", "base: tiny.yaml\ncases: [{workload.arrival_rate: 2}]\n"), "--out", "a_file"],
     "'--out': Directory 'a_file' is a file"),
    (["sweep", spec("s15.yaml", "base: tiny.yaml\ncases: [{workload.arrival_rate: 2}]\n"), "--out", "o",
      "--workers", "0"], "--workers"),
    (["sweep", spec("s16.yaml", "base: tiny.yaml\ngrid: {workload.distribution.input_median: [100, 0]}\n"),
      "--out", "o"], "workload.distribution.input_median"),
    (["sweep", spec("s17.yaml", "base: broken.yaml\ngrid: {workload.arrival_rate: [1]}\n"), "--out", "o"],
     "not valid YAML"),
    (["sweep", spec("s18.yaml", "base: tiny.yaml\ngrid: {gpus.5.tp: [[8]]}\n"), "--out", "o"],
     "'5' is not an index"),
    (["sweep", spec("s19.yaml", "base: tiny.yaml\ncases: []\n"), "--out", "o"], "cases: must have at least 1"),
    (["sweep", spec("s20.yaml", "base: tiny.yaml\ngrid: {}\n"), "--out", "o"], "grid: must have at least 1"),
    # ---- the model's context window ---------------------------------------------------
    (solve_set("pools.max_window=262144"), "pools.max_window: 262144 is longer than llama-3.1-70b's context window"),
    (solve_set("model=llama-2-70b"), "pools.max_window: 16384 is longer than llama-2-70b's context window of 4096"),
    (solve_set("model=llama-2-70b", "pools.max_window=4096"),
     "workload: 2.7 % of requests (up to 15928 tokens) are longer than llama-2-70b's context window of 4096"),
    (["evaluate", AZ, "--topology", "262144:h100x8"], "topology: the pool up to 262144 tokens is longer than"),
    (["solve", PAPER, "--set", "pools.boundaries=[4096, 200000]", "--set", "pools.max_window=null"],
     "pools.boundaries.1: 200000 is longer than llama-3.1-70b's context window"),
    # ---- energy, energy-map, calibrate ---------------------------------------------------
    (["energy", "tiny.yaml", "--queries-per-day", "-5"], "--queries-per-day"),
    (["energy", "tiny.yaml", "--queries-per-day", "inf"], "--queries-per-day: must be a finite number"),
    (["energy", "tiny.yaml", "--usd-per-mwh", "nan"], "--usd-per-mwh"),
    (["energy", "tiny.yaml", "--plan", "p.json", "--topology", "4096:h100"], "at most one of --plan or --topology"),
    (["energy", "tiny.yaml", "--set", "model=llama-9"], "model: unknown model 'llama-9'"),
    (["energy", "tiny.yaml", "--set", "gpus.0.tp=[3]"], "gpus.0.tp.0: tp 3 does not divide"),
    (["energy-map", "--model", "llama-9", "--gpu", "h100"], "unknown model 'llama-9'"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "0"], "--batch"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--tpot-ms", "inf"], "--tpot-ms: must be a finite"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--inputs", "abc"], "--inputs"),
    (["energy-map", "--model", "llama-3.1-8b", "--gpu", "h100", "--out", "foreign"],
     "--out: 'foreign' holds files fleetopt did not write"),
    (["calibrate", "nowhere.csv"], "no such measurements file"),
    (["calibrate", "meas_cols.csv"], "no metric column"),
    (["--calibration", "cal_bounds.yaml", "catalog", "gpus"], "coefficients.eta_bw: must be within"),
    (["--calibration", "cal_name.yaml", "catalog", "gpus"], "coefficients.eta_bandwidth: unknown coefficient"),
    (["--calibration", "cal_type.yaml", "catalog", "gpus"], "coefficients.eta_bw: expected a number"),
    (["--calibration", "cal_none.yaml", "catalog", "gpus"], "not a calibration file"),
    (["--calibration", "missing.yaml", "catalog", "gpus"], "no such calibration file"),
    (["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--dp", "2", "--batch", "8", "--prompt-tokens", "100",
      "--output-tokens", "10"], "dp: data-parallel attention with expert parallelism needs an MoE model"),
    (["estimate", "--model", "qwen3-235b-a22b", "--gpu", "h100", "--dp", "0", "--batch", "8", "--prompt-tokens",
      "100", "--output-tokens", "10"], "dp must be >= 1"),
    (["calibrate", "tiny.yaml"], "tiny.yaml: not a readable CSV"),
    # ---- sweep-report ------------------------------------------------------------------
    (["sweep-report", "nothing"], "sweep-report: no results"),
    (["sweep-report", "inst_dir"], "sweep-report: no results"),
    (["sweep-report", "report"], "sweep-report: cannot read the results"),
]


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name, text in FILES.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLEETOPT_CATALOG", raising=False)
    return tmp_path


def test_there_are_more_than_a_hundred():
    assert len(CASES) >= 100
    assert {a[0] if not a[0].startswith("--") else a[2] for a, _ in CASES} >= {
        "law", "estimate", "catalog", "evaluate", "solve", "simulate", "refine", "sweep", "sweep-report", "energy",
        "energy-map", "calibrate"}


@pytest.mark.parametrize("argv,needle", CASES, ids=[f"{i:03d}-{' '.join(a)[:60]}" for i, (a, _) in enumerate(CASES)])
def test_malformed_input_is_one_line_exit_2(argv, needle, workdir, capsys):
    before = _tree(workdir)
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("fleetopt: error: "), err
    assert needle in lines[0], err
    assert "Traceback" not in err
    assert _tree(workdir) == before                     # nothing written, nothing touched
