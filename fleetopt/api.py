"""The Python API: what the command line does, as functions over instances and plans.

    import fleetopt
    inst = fleetopt.load_instance("instances/heterogeneous.yaml", {"workload.arrival_rate": 300})
    plan = fleetopt.solve(inst)                       # a Plan; plan.pools is a DataFrame
    same = fleetopt.evaluate(inst, plan.spec)       # a given topology, sized
    sim = fleetopt.simulate(inst, plan, requests=20_000, seed=1)    # a DataFrame of pools

Every function takes an ``Instance`` (from ``load_instance``, possibly edited since: it is
validated again before use, with the command line's one-line messages) or an already
compiled ``Problem``.  Mistakes raise ``FleetoptError``, infeasible problems
``InfeasibleError`` (with a diagnosis), a time limit without a plan ``NoPlanInTimeError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetopt import loading
from fleetopt.catalog import Catalog, load_catalog
from fleetopt.evaluation import evaluate as evaluate_problem
from fleetopt.instance import Instance
from fleetopt.plan import Plan
from fleetopt.problem import Problem
from fleetopt.refinement import refine as refine_problem
from fleetopt.simulator.run import repair as repair_problem
from fleetopt.simulator.run import simulate as simulate_problem
from fleetopt.solver import solve as solve_problem
from fleetopt.sweeps import run_sweep
from fleetopt.topology import PoolChoice, parse_topology

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate", "load_instance", "refine", "simulate", "solve", "sweep"]


def load_instance(source: str | os.PathLike[str] | Mapping[str, Any], overrides: loading.Overrides | None = None,
                  *, catalog: Catalog | None = None) -> Instance:
    """An instance from a YAML file (``-`` reads stdin) or a mapping of the same shape,
    with ``overrides`` keyed by ``--set`` paths (``{"workload.arrival_rate": 300}``),
    validated and checked against the catalog (the packaged one unless given).  Relative
    paths inside a file resolve against its folder, inside a mapping against the current
    one.  A bad field raises ``FleetoptError`` with the command line's one line."""
    return loading.load_instance(source, overrides, catalog or load_catalog())


def _problem(instance: Instance | Problem, catalog: Catalog | None) -> Problem:
    """The compiled problem of an instance (validated again as it is now)."""
    return instance if isinstance(instance, Problem) else Problem.from_instance(instance, catalog)


def _topology(plan: Plan | str | Sequence[PoolChoice]) -> list[PoolChoice]:
    """A topology from a plan (as its plan.json writes it), a spec string or choices."""
    if isinstance(plan, Plan):
        return parse_topology(plan.spec)
    if isinstance(plan, str):
        return parse_topology(plan)
    return list(plan)


def solve(instance: Instance | Problem, *, workers: int = 1, verbose: bool = False,
          catalog: Catalog | None = None) -> Plan:
    """The optimal plan (``fleetopt solve``): pool boundaries, GPU type, TP and admission
    per pool, instance counts, with baselines, gains and solver statistics; checked
    against every constraint (``fleetopt.plan.check_plan``) before it is returned."""
    return solve_problem(_problem(instance, catalog), workers=workers, verbose=verbose)


def evaluate(instance: Instance | Problem, topology: Plan | str | Sequence[PoolChoice],
             admission: str | None = None, *, catalog: Catalog | None = None) -> Plan:
    """A given fleet sized and scored (``fleetopt evaluate``): ``topology`` as text
    (``4096:h100x8,65536:h100x8``), choices, or a plan's topology."""
    return evaluate_problem(_problem(instance, catalog), _topology(topology), admission)


def simulate(instance: Instance | Problem, plan: Plan | str | Sequence[PoolChoice], requests: int = 100_000,
             seed: int = 0, *, arrivals: str = "poisson", repair: bool = False,
             catalog: Catalog | None = None) -> pd.DataFrame:
    """The fleet simulated request by request (``fleetopt simulate``): one row per pool,
    simulated beside analytical; ``attrs`` holds the fleet's figures (``fleet``), the
    analytical ones (``analytical``), their ``deviation`` and the run (``sim``, and
    ``repair`` when asked: instances added to pools that miss an SLO)."""
    import pandas as pd  # heavy: pandas

    problem = _problem(instance, catalog)
    topo = _topology(plan)
    res = (repair_problem(problem, topo, requests, seed) if repair
           else simulate_problem(problem, topo, requests, seed, arrivals=arrivals))
    df = pd.DataFrame(res["pools"])
    df.attrs.update({k: v for k, v in res.items() if k != "pools"})
    return df


def refine(instance: Instance | Problem, trials: int = 100, *, timeout_s: float | None = None,
           storage: str | None = None, study: str | None = None, seed: int = 0, pareto: str | None = None,
           verify: bool = False, catalog: Catalog | None = None) -> pd.DataFrame:
    """Optuna over the knobs the MILP only samples, seeded by its plan (``fleetopt
    refine``): the best plan's pools, one row per pool; ``attrs`` holds the whole result
    (the MILP plan, the best trial's topology, fleet and knobs, the improvement, trial
    counts, the Pareto front with ``pareto``)."""
    import pandas as pd  # heavy: pandas

    res = refine_problem(_problem(instance, catalog), trials, timeout_s, storage, study, seed, pareto,
                         verify=verify)
    df = pd.DataFrame(res["best"]["pools"])
    df.attrs.update(res)
    return df


def sweep(spec: str | os.PathLike[str], out: str | os.PathLike[str], *, workers: int = 1,
          scheduler: str | None = None, retry_failed: bool = False, force: bool = False) -> pd.DataFrame:
    """Every case of a sweep spec solved (``fleetopt sweep``; resumable), and the results:
    one row per case, read from ``out``; ``attrs["summary"]`` says what ran."""
    import pandas as pd  # heavy: pandas

    summary = run_sweep(str(spec), str(out), workers, scheduler, retry_failed, force=force)
    df = pd.read_parquet(Path(out) / "cases")
    df.attrs["summary"] = summary
    return df
