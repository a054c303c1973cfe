"""The knobs ``fleetopt refine`` searches around a MILP plan, and one trial's evaluation.

Knobs (per pool k unless said):

* ``b{k}``      the exact upper boundary of pool k (not the last), an integer between the
                candidate boundaries on either side of the MILP's choice (16-token steps);
* ``gpu{k}``    the GPU type (the search may change the MILP's structure) and ``tp{k}_{gpu}``
                its TP degree among the instance's options;
* ``adm{k}``    admission policy (modes with serving knobs);
* ``seqs{k}``   max_num_seqs cap (8..1024, log scale);
* ``pcap{k}``   per-GPU power cap as a fraction of TDP (DVFS; 0.5..1);
* ``gmu``       gpu_memory_utilization (0.80..0.95), ``chunk`` prefill chunk tokens
                (512..16384), both fleet-wide;
* ``gamma``     compress-and-route gamma (1..4) when the instance enables it;
* for a split (disaggregated) pool k, the knobs above are its decode instances', and
  ``pgpu{k}``, ``ptp{k}_{gpu}``, ``ppcap{k}`` its prefill instances' GPU type, TP and power
  cap (the pool stays split).

Every trial is the exact evaluation of ``fleetopt evaluate``; trials that break the power
cap, a GPU inventory or an SLO are pruned.
"""

from __future__ import annotations

from typing import Any

from fleetopt.errors import FleetoptError, InfeasibleError
from fleetopt.evaluation import evaluate
from fleetopt.plan import Plan
from fleetopt.problem import Problem
from fleetopt.records import replace
from fleetopt.refinement.study import Direction
from fleetopt.topology import PoolChoice, groups, parse_topology

CHUNKS = [512, 1024, 2048, 4096, 8192, 16384]
PARETO: dict[str, tuple[str, Direction]] = {"ttft": ("ttft_p99_ms", "minimize"), "cost": ("cost_per_hour", "minimize")}
"""The second objective of a Pareto study: the fleet figure and its direction."""


class Search:
    """The knob space around a MILP plan and the trial evaluation (module docstring)."""

    def __init__(self, problem: Problem, milp: Plan, pareto: str | None = None) -> None:
        inst, catalog = problem.instance, problem.catalog
        self.problem, self.cat, self.pareto = problem, catalog, pareto
        self.topo = parse_topology(milp.spec)           # as plan.json writes it
        grp = groups(self.topo)
        self.uppers = [up for up, _ in grp]            # the ranges; a mixed range's members keep their shares
        self.range_of = [g for g, (_, idx) in enumerate(grp) for _ in idx]
        self.cands = list(problem.boundaries)
        self.gpus = {catalog.gpu(g.id).id: sorted(set(g.tp)) for g in inst.gpus}
        self.limits = {catalog.gpu(g.id).id: g.max_gpus for g in inst.gpus if g.max_gpus is not None}
        self.knobs = problem.mode.knobs                # serving knobs to search
        self.adms = problem.mode.admissions(problem.pools.admission)

    def _range(self, k: int) -> tuple[int, int]:
        """Candidates either side of the MILP's boundary k, kept inside its neighbours."""
        b = self.uppers[k]
        c = [0] + self.cands
        i = c.index(b) if b in c else min(range(len(c)), key=lambda j: abs(c[j] - b))
        lo = max(c[max(i - 1, 0)] + 16, self.uppers[k - 1] + 16 if k else 16)
        hi = min(c[min(i + 1, len(c) - 1)] - 16, self.uppers[k + 1] - 16)
        return min(lo, b), max(hi, b)

    def seed_params(self) -> dict[str, Any]:
        """The MILP plan as a parameter set (evaluates to exactly the MILP's figures)."""
        s = self.problem.serving
        p: dict[str, Any] = {f"b{g}": up for g, up in enumerate(self.uppers[:-1])}
        for k, pc in enumerate(self.topo):
            p[f"gpu{k}"] = pc.gpu
            p[f"tp{k}_{pc.gpu}"] = pc.tp
            if self.knobs:
                p[f"adm{k}"] = pc.admission or self.adms[0]
                p[f"seqs{k}"] = s.max_num_seqs
                tdp = self.cat.gpu(pc.gpu).tdp_w
                p[f"pcap{k}"] = min(1.0, ((pc.serving or {}).get("power_cap_w") or s.power_cap_w or tdp) / tdp)
            if pc.prefill_gpu is not None:
                g = self.cat.gpu(pc.prefill_gpu).id
                p[f"pgpu{k}"], p[f"ptp{k}_{g}"] = g, pc.prefill_tp
                tdp = self.cat.gpu(g).tdp_w
                p[f"ppcap{k}"] = min(1.0, ((pc.prefill_serving or {}).get("power_cap_w") or s.power_cap_w or tdp) / tdp)
        if self.knobs:
            p["gmu"], p["chunk"] = s.gpu_memory_utilization, s.chunk_tokens
        if self.problem.pools.compress is not None:
            p["gamma"] = self.problem.pools.compress.gamma
        return p

    def suggest(self, trial: Any) -> tuple[Problem, list[PoolChoice]]:
        """A trial's topology (boundaries, GPU, TP, admission and serving knobs per pool)
        and its problem (another compress-and-route gamma when the instance has one)."""
        s = self.problem.serving
        uppers = []
        for k in range(len(self.uppers) - 1):
            lo, hi = self._range(k)
            uppers.append(trial.suggest_int(f"b{k}", lo, hi, step=1))
        uppers.append(self.uppers[-1])
        if any(b <= a for a, b in zip(uppers, uppers[1:])):
            raise _prune("boundaries out of order")
        gmu = chunk = None
        if self.knobs:
            gmu = trial.suggest_float("gmu", min(0.80, s.gpu_memory_utilization), max(0.95, s.gpu_memory_utilization))
            chunk = trial.suggest_categorical("chunk", sorted(set(CHUNKS) | {s.chunk_tokens}))
        topo = []
        for k, member in enumerate(self.topo):
            up = uppers[self.range_of[k]]
            g = trial.suggest_categorical(f"gpu{k}", list(self.gpus))
            tp = trial.suggest_categorical(f"tp{k}_{g}", self.gpus[g])
            serving, adm = None, None
            if self.knobs:
                adm = trial.suggest_categorical(f"adm{k}", self.adms)
                tdp = self.cat.gpu(g).tdp_w
                frac = trial.suggest_float(f"pcap{k}", 0.5, 1.0)
                serving = {"max_num_seqs": trial.suggest_int(f"seqs{k}", 8, max(1024, s.max_num_seqs), log=True),
                           "power_cap_w": frac * tdp, "gpu_memory_utilization": gmu, "chunk_tokens": chunk}
            split: dict[str, Any] = {}
            if member.prefill_gpu is not None:         # a split pool stays split: its prefill knobs
                pg = trial.suggest_categorical(f"pgpu{k}", list(self.gpus))
                ptp = trial.suggest_categorical(f"ptp{k}_{pg}", self.gpus[pg])
                pfrac = trial.suggest_float(f"ppcap{k}", 0.5, 1.0)
                split = {"prefill_gpu": pg, "prefill_tp": ptp,
                         "prefill_serving": {"power_cap_w": pfrac * self.cat.gpu(pg).tdp_w,
                                             "gpu_memory_utilization": gmu, "chunk_tokens": chunk}}
            topo.append(PoolChoice(up, g, tp, adm, serving, share=member.share, **split))
        problem = self.problem
        if problem.pools.compress is not None:
            gamma = trial.suggest_float("gamma", 1.0, 4.0)
            problem = problem.with_compress(replace(problem.pools.compress, gamma=gamma))
        return problem, topo

    def evaluate(self, problem: Problem, topo: list[PoolChoice]) -> Plan:
        """The trial evaluated; pruned when it breaks an SLO, the power cap or an inventory.
        Its fleet carries the worst pool's P99 TTFT (``ttft_p99_ms``, for ``--pareto ttft``)."""
        try:
            plan = evaluate(problem, topo)
        except (InfeasibleError, FleetoptError) as e:
            raise _prune(str(e)) from None
        f = plan.fleet
        if problem.power.cap_w is not None and not f["within_power_cap"]:
            raise _prune("power cap")
        for g, lim in self.limits.items():
            if sum(p["gpus"] for p in plan.pool_rows if p["gpu"] == g) > lim:
                raise _prune(f"inventory of {g}")
        f["ttft_p99_ms"] = max(p["ttft_p99_ms"] for p in plan.pool_rows)
        return plan

    def values(self, plan: Plan) -> float | tuple[float, float]:
        """The trial's objective value(s): tokens per joule or cost, and the Pareto figure."""
        f = plan.fleet
        main = f["cost_per_hour"] if self.problem.objective == "min_cost" else f["tokens_per_joule"]
        if self.pareto:
            return main, f[PARETO[self.pareto][0]]
        return float(main)

    def metric_names(self) -> list[str]:
        """The study's objective names (Optuna's plots and dashboard show them)."""
        names = ["cost_per_hour" if self.problem.objective == "min_cost" else "tokens_per_joule"]
        if self.pareto:
            names.append(PARETO[self.pareto][0])
        return names

    def directions(self) -> list[Direction]:
        """The study's directions: maximise tokens per joule (minimise cost), then the Pareto figure."""
        d: list[Direction] = ["minimize" if self.problem.objective == "min_cost" else "maximize"]
        if self.pareto:
            d.append(PARETO[self.pareto][1])
        return d


def _prune(why: str) -> Exception:
    """Optuna's signal that a trial is pruned (``why`` its reason)."""
    import optuna  # heavy: Optuna

    return optuna.TrialPruned(why)
