"""``fleetopt refine``: Optuna over the knobs the MILP only samples, seeded by the MILP plan.

Knobs (per pool k unless said):
* ``b{k}``      the exact upper boundary of pool k (not the last), an integer between the
                candidate boundaries on either side of the MILP's choice (16-token steps);
* ``gpu{k}``    the GPU type (the search may change the MILP's structure) and ``tp{k}_{gpu}``
                its TP degree among the instance's options;
* ``adm{k}``    admission policy (physical mode);
* ``seqs{k}``   max_num_seqs cap (8..1024, log scale; physical mode);
* ``pcap{k}``   per-GPU power cap as a fraction of TDP (DVFS; 0.5..1; physical mode);
* ``gmu``       gpu_memory_utilization (0.80..0.95), ``chunk`` prefill chunk tokens
                (512..16384), both fleet-wide (physical mode);
* ``gamma``     compress-and-route gamma (1..4) when the instance enables it;
* for a split (disaggregated) pool k, the knobs above are its decode instances', and
  ``pgpu{k}``, ``ptp{k}_{gpu}``, ``ppcap{k}`` its prefill instances' GPU type, TP and power
  cap (the pool stays split).

Every trial is the exact evaluation of ``fleetopt evaluate`` (physics + SLO sizing); trials
that break the power cap, a GPU inventory or an SLO are pruned.  The MILP plan, with the
instance's own serving settings, is enqueued as the first trial of a new study, so the
result is never worse than it.  Studies live in an Optuna storage: by default a journal
file ``.fleetopt/<instance>.optuna.journal`` (append-only, safe for parallel writers);
``sqlite:///file.db`` or any Optuna RDB URL also works (optuna-dashboard reads both);
re-running with the same storage and study name resumes the study.
"""

from __future__ import annotations

import time
from pathlib import Path

from fleetopt import FleetoptError, InfeasibleError
from fleetopt.fleet import PoolChoice, build_workload, evaluate, groups, parse_topology
from fleetopt.instance import Instance
from fleetopt.schema import replace

CHUNKS = [512, 1024, 2048, 4096, 8192, 16384]
PARETO = {"ttft": ("ttft_p99_ms", "minimize"), "cost": ("cost_per_hour", "minimize")}


def storage_for(url: str | None, inst: Instance, base_dir: Path | None = None):
    """An Optuna storage: an RDB URL as given, else a journal file (default under .fleetopt/)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url and "://" in url:
        return url
    path = Path(url) if url else (base_dir or Path(".")) / ".fleetopt" / f"{inst.name}.optuna.journal"
    if path.is_dir():
        raise FleetoptError(f"--storage: '{path}' is a folder; give a journal file path or an RDB URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise FleetoptError(f"--storage: cannot open '{path}' ({e.strerror or e})") from None


class Search:
    """The knob space around a MILP plan and the trial evaluation."""

    def __init__(self, inst: Instance, base: Path, milp: dict, catalog, pareto: str | None = None):
        from fleetopt.columns import candidate_boundaries

        self.inst, self.base, self.cat, self.pareto = inst, base, catalog, pareto
        self.workload = build_workload(inst, base)
        self.topo = parse_topology(milp["topology"])
        grp = groups(self.topo)
        self.uppers = [up for up, _ in grp]            # the ranges; a mixed range's members keep their shares
        self.range_of = [g for g, (_, idx) in enumerate(grp) for _ in idx]
        self.cands = candidate_boundaries(inst, self.workload[0])
        self.gpus = {catalog.gpu(g.id).id: sorted(set(g.tp)) for g in inst.gpus}
        self.limits = {catalog.gpu(g.id).id: g.max_gpus for g in inst.gpus if g.max_gpus is not None}
        self.physical = inst.mode == "physical"
        self.adms = list(dict.fromkeys(inst.pools.admission)) if self.physical else ["reserve"]

    def _range(self, k: int) -> tuple[int, int]:
        """Candidates either side of the MILP's boundary k, kept inside its neighbours."""
        b = self.uppers[k]
        c = [0] + self.cands
        i = c.index(b) if b in c else min(range(len(c)), key=lambda j: abs(c[j] - b))
        lo = max(c[max(i - 1, 0)] + 16, self.uppers[k - 1] + 16 if k else 16)
        hi = min(c[min(i + 1, len(c) - 1)] - 16, self.uppers[k + 1] - 16)
        return min(lo, b), max(hi, b)

    def seed_params(self) -> dict:
        """The MILP plan as a parameter set (evaluates to exactly the MILP's figures)."""
        s = self.inst.serving
        p = {f"b{g}": up for g, up in enumerate(self.uppers[:-1])}
        for k, pc in enumerate(self.topo):
            p[f"gpu{k}"] = pc.gpu
            p[f"tp{k}_{pc.gpu}"] = pc.tp
            if self.physical:
                p[f"adm{k}"] = pc.admission or self.adms[0]
                p[f"seqs{k}"] = s.max_num_seqs
                tdp = self.cat.gpu(pc.gpu).tdp_w
                p[f"pcap{k}"] = min(1.0, ((pc.serving or {}).get("power_cap_w") or s.power_cap_w or tdp) / tdp)
            if pc.prefill_gpu is not None:
                g = self.cat.gpu(pc.prefill_gpu).id
                p[f"pgpu{k}"], p[f"ptp{k}_{g}"] = g, pc.prefill_tp
                tdp = self.cat.gpu(g).tdp_w
                p[f"ppcap{k}"] = min(1.0, ((pc.prefill_serving or {}).get("power_cap_w") or s.power_cap_w or tdp) / tdp)
        if self.physical:
            p["gmu"], p["chunk"] = s.gpu_memory_utilization, s.chunk_tokens
        if self.inst.pools.compress is not None:
            p["gamma"] = self.inst.pools.compress.gamma
        return p

    def suggest(self, trial) -> tuple[Instance, list[PoolChoice]]:
        s = self.inst.serving
        uppers = []
        for k in range(len(self.uppers) - 1):
            lo, hi = self._range(k)
            uppers.append(trial.suggest_int(f"b{k}", lo, hi, step=1))
        uppers.append(self.uppers[-1])
        if any(b <= a for a, b in zip(uppers, uppers[1:])):
            raise _prune("boundaries out of order")
        gmu = chunk = None
        if self.physical:
            gmu = trial.suggest_float("gmu", min(0.80, s.gpu_memory_utilization), max(0.95, s.gpu_memory_utilization))
            chunk = trial.suggest_categorical("chunk", sorted(set(CHUNKS) | {s.chunk_tokens}))
        topo = []
        for k, member in enumerate(self.topo):
            up = uppers[self.range_of[k]]
            g = trial.suggest_categorical(f"gpu{k}", list(self.gpus))
            tp = trial.suggest_categorical(f"tp{k}_{g}", self.gpus[g])
            serving, adm = None, None
            if self.physical:
                adm = trial.suggest_categorical(f"adm{k}", self.adms)
                tdp = self.cat.gpu(g).tdp_w
                frac = trial.suggest_float(f"pcap{k}", 0.5, 1.0)
                serving = {"max_num_seqs": trial.suggest_int(f"seqs{k}", 8, max(1024, s.max_num_seqs), log=True),
                           "power_cap_w": frac * tdp, "gpu_memory_utilization": gmu, "chunk_tokens": chunk}
            split = {}
            if member.prefill_gpu is not None:         # a split pool stays split: its prefill knobs
                pg = trial.suggest_categorical(f"pgpu{k}", list(self.gpus))
                ptp = trial.suggest_categorical(f"ptp{k}_{pg}", self.gpus[pg])
                pfrac = trial.suggest_float(f"ppcap{k}", 0.5, 1.0)
                split = {"prefill_gpu": pg, "prefill_tp": ptp,
                         "prefill_serving": {"power_cap_w": pfrac * self.cat.gpu(pg).tdp_w,
                                             "gpu_memory_utilization": gmu, "chunk_tokens": chunk}}
            topo.append(PoolChoice(up, g, tp, adm, serving, share=member.share, **split))
        inst = self.inst
        if inst.pools.compress is not None:
            gamma = trial.suggest_float("gamma", 1.0, 4.0)
            comp = replace(inst.pools.compress, gamma=gamma)
            inst = replace(inst, pools=replace(inst.pools, compress=comp))
        return inst, topo

    def evaluate(self, inst: Instance, topo: list[PoolChoice]) -> dict:
        try:
            res = evaluate(inst, self.base, topo, catalog=self.cat, workload=self.workload)
        except (InfeasibleError, FleetoptError) as e:
            raise _prune(str(e)) from None
        f = res["fleet"]
        cap = inst.power.facility_cap_mw
        if cap is not None and not f["within_power_cap"]:
            raise _prune("power cap")
        for g, lim in self.limits.items():
            if sum(p["gpus"] for p in res["pools"] if p["gpu"] == g) > lim:
                raise _prune(f"inventory of {g}")
        res["topology"] = ",".join(p.spec() for p in topo)
        f["ttft_p99_ms"] = max(p["ttft_p99_ms"] for p in res["pools"])
        return res

    def values(self, res: dict):
        f = res["fleet"]
        main = f["cost_per_hour"] if self.inst.objective == "min_cost" else f["tokens_per_joule"]
        if self.pareto:
            return main, f[PARETO[self.pareto][0]]
        return main

    def directions(self) -> list[str]:
        d = ["minimize" if self.inst.objective == "min_cost" else "maximize"]
        if self.pareto:
            d.append(PARETO[self.pareto][1])
        return d


def _prune(why: str):
    import optuna

    return optuna.TrialPruned(why)


def refine(inst: Instance, base: Path, trials: int = 100, timeout_s: float | None = None, storage: str | None = None,
           study_name: str | None = None, seed: int = 0, pareto: str | None = None, catalog=None,
           progress: bool = False, verify: bool = False, verify_requests: int = 50_000) -> dict:
    """Run (or resume) the study; ``verify`` simulates the refined plan."""
    import optuna

    from fleetopt.catalog import load_catalog
    from fleetopt.solve import solve_instance

    if pareto is not None and pareto not in PARETO:
        raise FleetoptError(f"--pareto: must be one of {', '.join(PARETO)}, got '{pareto}'")
    if inst.objective == "max_throughput":
        raise FleetoptError("objective: refine supports max_tokens_per_joule and min_cost, got max_throughput")
    t0 = time.perf_counter()
    cat = catalog or load_catalog()
    milp = solve_instance(inst, base, cat)
    search = Search(inst, base, milp, cat, pareto)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or f"refine-{inst.name}-{inst.objective}" + (f"-pareto-{pareto}" if pareto else "")
    sampler = optuna.samplers.TPESampler(seed=seed)
    try:
        study = optuna.create_study(study_name=name, storage=storage_for(storage, inst), sampler=sampler,
                                    directions=search.directions(), load_if_exists=True)
    except FleetoptError:
        raise
    except Exception as e:     # noqa: BLE001  (an unreachable or malformed RDB URL, a study of other directions)
        raise FleetoptError(f"--storage: cannot use '{storage}' for study '{name}' "
                            f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    before = len(study.trials)
    if before == 0:
        study.enqueue_trial(search.seed_params())

    def objective(trial):
        inst_t, topo = search.suggest(trial)
        res = search.evaluate(inst_t, topo)
        trial.set_user_attr("topology", res["topology"])
        return search.values(res)

    study.optimize(objective, n_trials=trials, timeout=timeout_s, show_progress_bar=progress,
                   catch=(FloatingPointError, ZeroDivisionError))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    if not done:
        raise InfeasibleError("no trial met the SLOs, the power cap and the inventories")
    if pareto:
        best_t = max(study.best_trials, key=lambda t: t.values[0] * (1 if search.directions()[0] == "maximize" else -1))
    else:
        best_t = study.best_trial
    inst_b, topo_b = search.suggest(optuna.trial.FixedTrial(best_t.params))
    best = search.evaluate(inst_b, topo_b)
    key = "cost_per_hour" if inst.objective == "min_cost" else "tokens_per_joule"
    m, b = milp["fleet"][key], best["fleet"][key]
    improvement = (b / m - 1.0) if key == "tokens_per_joule" else (1.0 - b / m)
    out = {"instance": inst.name, "objective": inst.objective, "study": name,
           "milp": {"topology": milp["topology"], **milp["fleet"]},
           "best": {"topology": best["topology"], "pools": best["pools"], "fleet": best["fleet"],
                    "knobs": best_t.params, "trial": best_t.number},
           "improvement": improvement,
           "trials": {"count": len(study.trials), "completed": len(done), "pruned": len(pruned),
                      "this_run": len(study.trials) - before},
           "seconds": time.perf_counter() - t0, "seed": seed}
    if verify:                       # the refined plan, knobs included, request by request
        from fleetopt.simulate.run import misses, simulate

        v = simulate(inst_b, base, topo_b, verify_requests, seed, cat)
        out["verification"] = {"fleet": v["fleet"], "deviation": v["deviation"], "sim": v["sim"],
                               "slo_missed": any(p["requests"] and misses(inst, p) for p in v["pools"])}
    if pareto:
        col = PARETO[pareto][0]
        out["pareto"] = sorted(({"trial": t.number, key: t.values[0], col: t.values[1],
                                 "topology": t.user_attrs.get("topology")} for t in study.best_trials),
                               key=lambda r: r[col])
    return out
