"""`fleetopt solve`: time as the search space grows, and plan quality against the baselines
and an Optuna-only search given the same number of evaluations.

    python benchmarks/solve_scaling.py          # writes benchmarks/results/solve_scaling.md
    python benchmarks/solve_scaling.py --only knee   # re-runs one section, keeps the others

Part 1 runs the real command in a fresh process (`python -m fleetopt solve ...`, default
--workers: up to 2 processes size the candidate pools), so the wall time includes
interpreter start and every import (with bytecode caching allowed, as for an installed
package), on the Azure-derived
heterogeneous instance (conversation + code traces, physical mode), growing GPU types x
candidate boundaries x K.  The solver's own breakdown (columns, MILP) comes from its JSON.
Part 2 gives Optuna (TPE, seed 0) as many `evaluate` calls as the MILP had columns
... capped at 300 trials, searching the same boundaries, configs and K, and compares tok/J.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INST = ROOT / "instances" / "heterogeneous.yaml"
GPUS = ["a100-sxm-80gb", "h100-sxm", "h200", "b200", "l40s", "gb200", "mi300x"]


def run(sets: list[str]) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "fleetopt", "solve", str(INST), "--format", "json"]
    for s in sets:
        cmd += ["--set", s]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}   # cached bytecode, as installed
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return time.perf_counter() - t0, json.loads(out)


def bare(cmd: list[str], reps: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        out.append(time.perf_counter() - t0)
    return out


REPS = 9


def startup_rows() -> list[dict]:
    """What any process pays before solving: the interpreter, and fleetopt's CLI imports."""
    rows = []
    for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                       ("python -m fleetopt --help", [sys.executable, "-m", "fleetopt", "--help"]),
                       ("import what solve needs", [sys.executable, "-c", "import fleetopt.cli, fleetopt.cli.plan, "
                                                    "fleetopt.solver, fleetopt.profiles, formulations.fleet, highspy"])):
        ts = sorted(bare(cmd, REPS))
        rows.append({"command": label, "wall_s": ts[0], "wall_median_s": ts[len(ts) // 2]})
    return rows


def scaling_rows() -> list[dict]:
    """Whole-process wall time, best and median of REPS runs (this shared VM varies by
    +-20 % from run to run).  ``auto_count`` is chosen so the boundary counts reach the
    issue's 32 after quantile deduplication."""
    rows = []
    cases = [(1, 8, 1), (2, 16, 2), (4, 40, 3), (6, 40, 3), (7, 40, 3), (7, 72, 3)]
    for n_gpu, n_bounds, k in cases:
        keep = list(range(n_gpu))
        sets = [f"pools.auto_count={n_bounds}", f"pools.max_pools={k}"]
        gp = [{"id": GPUS[i], "tp": t} for i, t in zip(keep, [[4, 8], [4, 8], [2, 4, 8], [2, 4, 8], [4, 8], [2, 4],
                                                               [2, 4, 8]])]
        sets.append("gpus=" + json.dumps(gp))
        runs = sorted((run(sets) for _ in range(REPS)), key=lambda r: r[0])
        res = runs[0][1]
        s, ss = res["solver"], res["search_space"]
        rows.append({"gpu_types": n_gpu, "configs": len(ss["configs"]), "boundaries": len(ss["boundaries"]),
                     "max_pools": k, "columns": ss["columns"], "after_pruning": ss["columns_after_pruning"],
                     "wall_s": runs[0][0], "wall_median_s": runs[len(runs) // 2][0], "in_process_s": s["seconds"],
                     "columns_s": s["column_seconds"], "milp_s": s["solve_seconds"], "status": s["status"],
                     "tokens_per_joule": res["fleet"]["tokens_per_joule"],
                     "homogeneous_tpj": res["baselines"]["homogeneous"]["tokens_per_joule"]})
    return rows


def optuna_rows(budget_cap: int = 300) -> list[dict]:
    import optuna

    import fleetopt
    from fleetopt import InfeasibleError
    from fleetopt.evaluation import evaluate
    from fleetopt.problem import Problem
    from fleetopt.topology import PoolChoice

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for name in ("heterogeneous", "azure-conv-h100", "paper-azure-h100"):
        inst = fleetopt.load_instance(ROOT / "instances" / f"{name}.yaml")
        t0 = time.perf_counter()
        problem = Problem.from_instance(inst)
        milp = fleetopt.solve(problem).to_dict()
        t_milp = time.perf_counter() - t0
        bounds = list(problem.boundaries)
        cfgs = list(problem.configs)
        budget = min(budget_cap, milp["search_space"]["columns"])

        def objective(trial, inst=inst, bounds=bounds, cfgs=cfgs, problem=problem):
            k = trial.suggest_int("pools", 1, inst.pools.max_pools)
            cuts = sorted({trial.suggest_categorical(f"b{i}", bounds[:-1]) for i in range(k - 1)})
            uppers = cuts + [bounds[-1]]
            topo = []
            for i, u in enumerate(uppers):
                c = cfgs[trial.suggest_int(f"c{i}", 0, len(cfgs) - 1)]
                topo.append(PoolChoice(u, c.gpu, c.tp, c.admission))
            try:
                f = evaluate(problem, topo).fleet
            except InfeasibleError:
                return 0.0
            return f["tokens_per_joule"]

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=budget)
        t_opt = time.perf_counter() - t0
        rows.append({"instance": name, "evaluations": budget, "milp_tpj": milp["fleet"]["tokens_per_joule"],
                     "milp_s": t_milp, "optuna_tpj": study.best_value, "optuna_s": t_opt,
                     "optuna_vs_milp_pct": 100 * (study.best_value / milp["fleet"]["tokens_per_joule"] - 1)})
    return rows


def plan_rows() -> list[dict]:
    """The solved plan of every shipped instance against its baselines (same model)."""
    import fleetopt

    rows = []
    for path in sorted((ROOT / "instances").glob("*.yaml")):
        inst = fleetopt.load_instance(path)
        t0 = time.perf_counter()
        r = fleetopt.solve(inst).to_dict()
        f, h, two = r["fleet"], r["baselines"]["homogeneous"], r["baselines"]["two_pool_paper"]
        rows.append({"instance": inst.name, "mode": inst.mode, "plan": r["topology"], "instances": f["instances"],
                     "tokens_per_joule": f["tokens_per_joule"], "tok_per_w_paper": f["tok_per_w_paper"],
                     "homog_instances": h["instances"] if h else None,
                     "homog_tok_per_w_paper": h["tok_per_w_paper"] if h else None,
                     "two_pool_instances": two["instances"] if two else None,
                     "two_pool_tok_per_w_paper": two["tok_per_w_paper"] if two else None,
                     "gain_vs_homog_pct": 100 * r["gains"]["vs_homogeneous"]["tokens_per_joule"] if h else None,
                     "status": r["solver"]["status"], "seconds": time.perf_counter() - t0})
    return rows


def mixed_rows() -> list[dict]:
    """Mixed pools on the heterogeneous instance with B200s limited to 50 GPUs (the
    unlimited plan uses 78): split grids 1 (one config per range), 2 and 4."""
    import fleetopt

    rows = []
    for m in (1, 2, 4):
        inst = fleetopt.load_instance(INST, ["gpus.3.max_gpus=50", f"pools.split_grid={m}"])
        t0 = time.perf_counter()
        r = fleetopt.solve(inst, workers=2).to_dict()
        s = r["solver"]
        rows.append({"split_grid": m, "plan": r["topology"], "instances": r["fleet"]["instances"],
                     "it_power_kw": r["fleet"]["it_power_kw"], "tokens_per_joule": r["fleet"]["tokens_per_joule"],
                     "columns": r["search_space"]["columns_after_pruning"], "rows": s["constraints"],
                     "status": s["status"], "milp_s": s["solve_seconds"], "seconds": time.perf_counter() - t0})
    return rows


KNEE_STOCK = [f"gpus.{i}.max_gpus=40" for i in (2, 3, 5, 6)]


def knee_bounds(sets: list[str]) -> tuple[float, float]:
    """(LP relaxation bound, best one-pool plan) of the least-energy MILP over the pruned
    columns, kW: the gap that elimination has to close."""
    import fleetopt
    from fleetopt.columns import generate, prune_dominated
    from fleetopt.problem import Problem
    from fleetopt.solver.bounds import one_pool_plan
    from fleetopt.solver.milp import formulation, model_data
    from formulations.fleet import lagrange_multipliers

    problem = Problem.from_instance(fleetopt.load_instance(INST, sets))
    cols = prune_dominated(generate(problem, workers=2), problem.objective, False)
    d = model_data(problem, cols)
    lp = lagrange_multipliers(d, formulation(d).constraint_rows(d), cols.energy_w)
    return lp.value / 1e3, one_pool_plan(cols, cols.energy_w, d.stock, d.cap_w)[0] / 1e3


def knee_rows() -> list[dict]:
    """The knee of issue 16: mixed pools under binding stock (H200, B200, GB200 and MI300X
    limited to 40 GPUs each) on the heterogeneous instance, split grids 1-4 on 31 candidate
    boundaries and grid 4 on 64 (auto_count 64); whole process, best and median of REPS."""
    rows = []
    for grid, count in ((1, 32), (2, 32), (3, 32), (4, 32), (4, 64)):
        sets = KNEE_STOCK + [f"pools.split_grid={grid}", f"pools.auto_count={count}"]
        runs = sorted((run(sets) for _ in range(REPS)), key=lambda r: r[0])
        res = runs[0][1]
        s, ss = res["solver"], res["search_space"]
        lp_kw, one_pool_kw = knee_bounds(sets)
        rows.append({"split_grid": grid, "boundaries": len(ss["boundaries"]), "plan": res["topology"],
                     "it_power_kw": res["fleet"]["it_power_kw"], "lp_bound_kw": lp_kw, "one_pool_kw": one_pool_kw,
                     "columns": ss["columns_after_pruning"],
                     "milp_columns": s["variables"], "status": s["status"], "wall_s": runs[0][0],
                     "wall_median_s": runs[len(runs) // 2][0], "columns_s": s["column_seconds"],
                     "milp_s": s["solve_seconds"]})
    return rows


SECTIONS = {
    "plans": (plan_rows, "solved plans of every shipped instance (in process)"),
    "startup": (startup_rows, f"start-up alone (best and median of {REPS})"),
    "scaling": (scaling_rows, f"fleetopt solve, whole process (best and median of {REPS}), heterogeneous Azure instance"),
    "mixed": (mixed_rows, "mixed pools (pools.split_grid), heterogeneous instance, B200 stock 50 GPUs"),
    "knee": (knee_rows, (f"mixed pools under binding stock (H200, B200, GB200, MI300X at 40 GPUs), whole process "
                         f"(best and median of {REPS})")),
    "optuna": (optuna_rows, "MILP against Optuna-only (TPE, seed 0) with the same evaluation budget"),
}


def main() -> None:
    """Every section, or ``--only a,b``: those sections, each replacing its table in the
    published results (the others are kept as they were)."""
    import argparse

    from fleetopt.render import table

    from _results import RESULTS, publish

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=None, help="comma-separated sections: " + ", ".join(SECTIONS))
    only = ap.parse_args().only
    names = list(SECTIONS) if only is None else [n.strip() for n in only.split(",")]
    old: dict[str, str] = {}
    path = RESULTS / "solve_scaling.md"
    if only is not None and path.exists():
        body = path.read_text().strip().removeprefix("```").removesuffix("```").strip("\n")
        for block in body.split("\n\n"):
            for key, (_, title) in SECTIONS.items():
                if block.startswith(title):
                    old[key] = block
    blocks = []
    for key, (rows, title) in SECTIONS.items():
        if key in names:
            blocks.append(table(rows(), title))
        elif key in old:
            blocks.append(old[key])
    publish("solve_scaling", "\n\n".join(blocks))


if __name__ == "__main__":
    main()
