"""``fleetopt refine``: Optuna over the knobs the MILP only samples, seeded by the MILP plan.

Knobs (``fleetopt.refinement.search``; per pool k unless said):
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

What keeps a study sound (``SafeJournal``, ``open_study``):
* the journal path is absolute (Optuna's lock otherwise points nowhere) and appends are
  serialised by an ``flock`` the kernel drops when its holder dies, so no lock is ever
  stale; a leftover Optuna symlink lock that points nowhere is removed;
* a last record cut short (a kill or a full disk in mid-append) is cut off before anything
  is appended after it, with a one-line warning; a corrupt record elsewhere is refused in
  one line; an append that fails is rolled back;
* the default study name carries a hash of the problem (the instance after ``--set``, the
  files it reads, the catalog entries it uses), so another problem starts another study;
  a study named with ``--study`` that holds another problem is refused;
* each trial records its host and process; on resume, RUNNING trials of processes that
  are gone are marked FAIL;
* Ctrl-C or SIGTERM lets the running trial finish, then ends with one line (exit 130).

The study's objectives are named (``study.set_metric_names``: ``tokens_per_joule`` or
``cost_per_hour``, and the Pareto metric), and a pruned trial records why in its user
attribute ``pruned_because``; the result's ``history`` lists every trial (state, values,
prune reason) for the optimisation-history plot of ``refine --out``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from fleetopt.errors import FleetoptError, FleetoptWarning, InfeasibleError, Interrupted
from fleetopt.problem import Problem
from fleetopt.procs import stop_on_signals
from fleetopt.refinement.journal import storage_for, write_failure
from fleetopt.refinement.search import PARETO, Search
from fleetopt.refinement.study import (
    OWNER_ATTR,
    PRUNE_ATTR,
    RUN_ATTR,
    fail_dead_trials,
    history,
    name_metrics,
    open_study,
    owner_record,
    problem_hash,
)
from fleetopt.simulator.run import misses, simulate
from fleetopt.solver import solve

__all__ = ["refine"]


def refine(problem: Problem, trials: int = 100, timeout_s: float | None = None, storage: str | None = None,
           study_name: str | None = None, seed: int = 0, pareto: str | None = None, progress: bool = False,
           verify: bool = False, verify_requests: int = 50_000) -> dict[str, Any]:
    """Run (or resume) the study of ``trials`` more trials (or until ``timeout_s``), seeded
    by the MILP plan, in ``storage`` (module docstring) under ``study_name`` (default: the
    instance, objective and a hash of the problem); ``pareto`` adds a second objective;
    ``verify`` simulates the refined plan.  Returns the MILP plan, the best trial (its
    topology, pools, fleet and knobs), the improvement, the trial counts (and the Pareto
    front)."""
    import optuna  # heavy: Optuna

    inst = problem.instance
    if pareto is not None and pareto not in PARETO:
        raise FleetoptError(f"--pareto: must be one of {', '.join(PARETO)}, got '{pareto}'")
    if inst.objective == "max_throughput":
        raise FleetoptError("objective: refine supports max_tokens_per_joule and min_cost, got max_throughput")
    t0 = time.perf_counter()
    phash = problem_hash(problem)
    store = storage_for(storage, inst.name)          # a bad storage is refused before the MILP runs
    milp = solve(problem)
    search = Search(problem, milp, pareto)
    optuna.logging.set_verbosity(optuna.logging.ERROR)     # fleetopt reports failures itself, on one line
    name = study_name or (f"refine-{inst.name}-{inst.objective}" + (f"-pareto-{pareto}" if pareto else "")
                          + f"-{phash[:10]}")
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = open_study(name, store, search.directions(), sampler, phash, named=study_name is not None)
    dead = fail_dead_trials(study)
    if dead:
        warnings.warn(f"study '{name}': {dead} trial(s) left RUNNING by a killed run marked failed", FleetoptWarning,
                      stacklevel=2)
    owner = owner_record()
    study.set_user_attr(RUN_ATTR + owner, time.time())
    before = len(study.trials)
    if not any(t.state.name in ("COMPLETE", "WAITING") for t in study.trials):     # the MILP plan first
        study.enqueue_trial(search.seed_params())
    stop: list[int] = []
    name_metrics(study, search.metric_names())

    def objective(trial: Any) -> float | tuple[float, float]:
        """One trial: its knobs suggested, evaluated, its topology recorded (a pruned one
        records why, for the dashboard and the history plot)."""
        trial.set_user_attr(OWNER_ATTR, owner)
        try:
            problem_t, topo = search.suggest(trial)
            plan = search.evaluate(problem_t, topo)
        except optuna.TrialPruned as e:
            trial.set_user_attr(PRUNE_ATTR, str(e) or "pruned")
            raise
        trial.set_user_attr("topology", plan.spec)
        return search.values(plan)

    bar = None
    if progress:                                    # on stderr, from 2 s on
        from tqdm import tqdm  # heavy: progress bars

        bar = tqdm(total=trials, desc="refine", unit="trial", delay=2.0, leave=False, dynamic_ncols=True)

    def halt(study_: Any, trial_: Any) -> None:
        """Count the trial; stop the study after the running trial when a signal came."""
        if bar is not None:
            bar.update(1)
        if stop:
            study_.stop()

    try:
        with stop_on_signals(lambda signum: stop.append(signum)):
            study.optimize(objective, n_trials=trials, timeout=timeout_s,
                           catch=(FloatingPointError, ZeroDivisionError), callbacks=[halt])
    except Exception as e:     # only a storage that failed to write is turned into one line
        why = write_failure(store, e)
        if why is None:
            raise
        raise FleetoptError(f"--storage: cannot write the study '{name}' ({why}); the trials recorded before "
                            f"are kept") from None
    finally:
        if bar is not None:
            bar.close()
    if stop:
        raise Interrupted(f"study '{name}' keeps {len(study.trials)} trials ({len(study.trials) - before} this run); "
                          f"run the same command again to resume")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    if not done:
        raise InfeasibleError("no trial met the SLOs, the power cap and the inventories")
    if pareto:
        best_t = max(study.best_trials, key=lambda t: t.values[0] * (1 if search.directions()[0] == "maximize" else -1))
    else:
        best_t = study.best_trial
    problem_b, topo_b = search.suggest(optuna.trial.FixedTrial(best_t.params))
    best = search.evaluate(problem_b, topo_b)
    key = "cost_per_hour" if inst.objective == "min_cost" else "tokens_per_joule"
    m, b = milp.fleet[key], best.fleet[key]
    improvement = (b / m - 1.0) if key == "tokens_per_joule" else (1.0 - b / m)
    out: dict[str, Any] = {
           "instance": inst.name, "objective": inst.objective, "study": name,
           "milp": {"topology": milp.spec, **milp.fleet},
           "best": {"topology": best.spec, "pools": list(best.pool_rows), "fleet": best.fleet,
                    "knobs": best_t.params, "trial": best_t.number},
           "improvement": improvement,
           "trials": {"count": len(study.trials), "completed": len(done), "pruned": len(pruned),
                      "this_run": len(study.trials) - before},
           "seconds": time.perf_counter() - t0, "seed": seed,
           "metric_names": search.metric_names(), "history": history(study)}
    if verify:                       # the refined plan, knobs included, request by request
        v = simulate(problem_b, topo_b, verify_requests, seed)
        out["verification"] = {"fleet": v["fleet"], "pools": v["pools"], "deviation": v["deviation"], "sim": v["sim"],
                               "slo_missed": any(p["requests"] and misses(problem.slo, p) for p in v["pools"])}
    if pareto:
        col = PARETO[pareto][0]
        out["pareto"] = sorted(({"trial": t.number, key: t.values[0], col: t.values[1],
                                 "topology": t.user_attrs.get("topology")} for t in study.best_trials),
                               key=lambda r: r[col])
    return out
