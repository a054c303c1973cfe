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

import hashlib
import json
import os
import socket
import time
import warnings
from pathlib import Path

from fleetopt import FleetoptError, FleetoptWarning, InfeasibleError, Interrupted
from fleetopt.fleet import PoolChoice, build_workload, evaluate, groups, model_context, parse_topology
from fleetopt.instance import Instance
from fleetopt.schema import replace, to_builtins

CHUNKS = [512, 1024, 2048, 4096, 8192, 16384]
PARETO = {"ttft": ("ttft_p99_ms", "minimize"), "cost": ("cost_per_hour", "minimize")}


OWNER_ATTR = "fleetopt_owner"
RUN_ATTR = "fleetopt_run:"
"""A study attribute per process that ran trials on it (``RUN_ATTR + _owner()``)."""
PROBLEM_ATTR = "fleetopt_problem"
PRUNE_ATTR = "pruned_because"
"""A pruned trial's user attribute: why (the power cap, an inventory, an SLO, ...)."""
STALE_UNOWNED_S = 60.0
"""A RUNNING trial without an owner record (killed between its creation and the record)
is taken as dead after this long."""


def problem_hash(inst: Instance, base: Path, catalog) -> str:
    """What a study's trials depend on: the instance after overrides (not its name or
    description), the contents of the files it reads, and the catalog entries it uses."""
    from fleetopt.fleet import _resolve

    d = to_builtins(inst)
    d.pop("name", None)
    d.pop("description", None)
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
    dist = inst.workload.distribution
    comps = [c.workload for c in dist.components.values()] if dist.type == "mixture" else [dist]
    for c in comps:
        if getattr(c, "path", None):
            try:
                h.update(_resolve(base, c.path).read_bytes())
            except OSError:
                pass
    entries = [catalog.model(inst.model)] + [catalog.gpu(g.id) for g in inst.gpus]
    h.update(json.dumps([to_builtins(e) for e in entries], sort_keys=True).encode())
    return h.hexdigest()


def _journal_classes():
    """``SafeJournal`` and its lock, built on Optuna's journal backend (imported lazily)."""
    import fcntl

    from optuna.storages.journal import JournalFileBackend

    class FlockLock:
        """An exclusive ``flock`` on ``<journal>.flock``: released by the kernel when the
        holder dies, so never stale (Optuna's symlink lock can be, and then spins).  Has
        the ``acquire``/``release`` of Optuna's journal locks."""

        def __init__(self, path: str):
            self.path = path
            self.fd: int | None = None

        def acquire(self) -> bool:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return True

        def release(self) -> None:
            if self.fd is not None:
                fd, self.fd = self.fd, None
                os.close(fd)                    # closing drops the flock

    class SafeJournal(JournalFileBackend):
        """Optuna's journal file, with the guarantees listed in the module docstring."""

        def __init__(self, path: str):
            self._check(path)                   # before anything is created
            super().__init__(path, lock_obj=FlockLock(path + ".flock"))
            self.repaired = 0
            self.write_error: OSError | None = None
            self._lock.acquire()
            try:
                self.repaired = self._repair()
            finally:
                self._lock.release()

        @staticmethod
        def _check(path: str) -> None:
            """Refuse a journal with a corrupt complete record (appends only ever add to
            the end, so this needs no lock)."""
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1
            for i, line in enumerate(data[:end].splitlines(), start=1):
                try:
                    json.loads(line)
                except ValueError:
                    raise FleetoptError(f"--storage: journal '{path}' is corrupt at line {i}; move it aside to "
                                        f"start a new study") from None

        def _repair(self) -> int:
            """Cut off a last record cut short, under the lock (returns the bytes dropped)."""
            size = os.path.getsize(self._file_path)
            if not size:
                return 0
            with open(self._file_path, "rb") as f:
                f.seek(max(0, size - (1 << 20)))
                tail = f.read()
            if tail.endswith(b"\n"):
                return 0
            cut = tail.rfind(b"\n")
            end = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= (1 << 20) else None)
            if end is None:
                raise FleetoptError(f"--storage: journal '{self._file_path}' ends in a record over 1 MiB long "
                                    f"cut short; move it aside to start a new study")
            os.truncate(self._file_path, end)
            return size - end

        def append_logs(self, logs) -> None:
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            self._lock.acquire()
            try:
                size = os.path.getsize(self._file_path)
                try:
                    with open(self._file_path, "ab") as f:
                        f.write(text.encode("utf-8"))
                        f.flush()
                        os.fsync(f.fileno())
                except BaseException as e:
                    if isinstance(e, OSError):
                        self.write_error = e    # Optuna may replace it with its own error on the way out
                    try:                        # roll back a partial append (a full disk)
                        os.truncate(self._file_path, size)
                    except OSError:
                        pass
                    raise
            finally:
                self._lock.release()

    return SafeJournal


def _drop_dead_symlink_lock(path: Path) -> None:
    """A symlink lock Optuna's default journal lock left behind that points nowhere (the
    relative paths of earlier fleetopt versions): it would make Optuna spin; remove it."""
    lock = Path(str(path) + ".lock")
    if lock.is_symlink() and not lock.exists():
        try:
            lock.unlink()
            warnings.warn(f"removed a stale journal lock '{lock}' (left by a killed run)", FleetoptWarning,
                          stacklevel=2)
        except OSError:
            pass


def storage_for(url: str | None, inst: Instance, base_dir: Path | None = None):
    """An Optuna storage: an RDB URL as given, else a journal file (default
    ``.fleetopt/<instance>.optuna.journal`` under ``base_dir``, the current folder by
    default), always by its absolute path, opened as a ``SafeJournal``."""
    from optuna.storages import JournalStorage

    if url and "://" in url:
        return url
    path = (Path(url) if url else (base_dir or Path.cwd()) / ".fleetopt" / f"{inst.name or 'instance'}.optuna.journal")
    path = path.expanduser().absolute()
    if path.is_dir():
        raise FleetoptError(f"--storage: '{path}' is a folder; give a journal file path or an RDB URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_dead_symlink_lock(path)
        backend = _journal_classes()(str(path))
    except OSError as e:
        raise FleetoptError(f"--storage: cannot open '{path}' ({e.strerror or e})") from None
    if backend.repaired:
        warnings.warn(f"journal '{path}': dropped an incomplete last record ({backend.repaired} bytes, from an "
                      f"interrupted write)", FleetoptWarning, stacklevel=2)
    return JournalStorage(backend)


def _write_failure(store, exc: Exception) -> str | None:
    """Why the storage could not record the study (a full or read-only disk), or None
    when ``exc`` is something else.  Optuna may raise its own error after a failed
    append, so the journal remembers the original."""
    backend = getattr(store, "_backend", None)
    err = getattr(backend, "write_error", None)
    if err is not None:
        return err.strerror or str(err)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if type(exc).__module__.startswith("sqlalchemy"):           # an RDB storage: disk full, read-only, gone
        return (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0]
    return None


def _owner() -> str:
    """This process, as recorded on the trials it runs: host, pid and process start time
    (so a reused pid is not taken for the same process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(owner: str) -> bool | None:
    """Whether the process of an owner record still runs (None: on another host)."""
    host, pid, start = (owner.split(":") + ["", ""])[:3]
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return not start or _start_time(int(pid)) == start


def fail_dead_trials(study) -> int:
    """Mark FAIL the RUNNING trials whose process is gone (on this host).  A trial that
    has not recorded its process yet (killed in between) is dead when every process that
    ran on the study is gone, or when it is older than STALE_UNOWNED_S.  Returns how many."""
    import datetime

    from optuna.trial import TrialState

    n = 0
    now = datetime.datetime.now()
    runs = [k[len(RUN_ATTR):] for k in study.user_attrs if k.startswith(RUN_ATTR)]
    others_alive = any(_alive(o) is not False for o in runs if o != _owner())
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER_ATTR)
        if owner is not None:
            dead = _alive(owner) is False
        else:
            dead = not others_alive or (t.datetime_start is not None
                                        and (now - t.datetime_start).total_seconds() > STALE_UNOWNED_S)
        if dead:
            try:
                study.tell(t.number, state=TrialState.FAIL)
                n += 1
            except (RuntimeError, ValueError):      # finished meanwhile by its owner
                pass
    return n


def open_study(name: str, storage, directions: list[str], sampler, problem: str, named: bool):
    """Create or resume the study; a resumed one must hold the same problem (``problem``,
    a ``problem_hash``): a study named by the user that holds another is refused."""
    import optuna

    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions,
                                    load_if_exists=True)
    except FleetoptError:
        raise
    except Exception as e:     # an unreachable or malformed RDB URL, a study of other directions
        raise FleetoptError(f"--storage: cannot use it for study '{name}' "
                            f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    held = study.user_attrs.get(PROBLEM_ATTR)
    if held is None and not study.trials:
        study.set_user_attr(PROBLEM_ATTR, problem)
    elif held != problem:
        what = "another problem" if held else "a problem it does not record"
        hint = "give another --study or leave it out" if named else "move the storage aside"
        raise FleetoptError(f"--study: study '{name}' holds {what} (the instance, its --set overrides, its files "
                            f"or the catalog differ); {hint}")
    return study


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
        self.cands = candidate_boundaries(inst, self.workload[0], model_context(inst, catalog))
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

    def metric_names(self) -> list[str]:
        """The study's objective names (Optuna's plots and dashboard show them)."""
        names = ["cost_per_hour" if self.inst.objective == "min_cost" else "tokens_per_joule"]
        if self.pareto:
            names.append(PARETO[self.pareto][0])
        return names

    def directions(self) -> list[str]:
        d = ["minimize" if self.inst.objective == "min_cost" else "maximize"]
        if self.pareto:
            d.append(PARETO[self.pareto][1])
        return d


def history(study) -> list[dict]:
    """Every trial of the study in order: its state, its objective values (None unless
    complete) and, for a pruned one, why."""
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append({"trial": t.number, "state": t.state.name, "values": list(t.values) if t.values else None,
                    "pruned_because": t.user_attrs.get(PRUNE_ATTR), "topology": t.user_attrs.get("topology")})
    return out


def _name_metrics(study, names: list[str]) -> None:
    """``study.set_metric_names`` (experimental in Optuna, hence its warning silenced);
    a study that already has them, or an Optuna without it, is left as it is."""
    if getattr(study, "metric_names", None) == names or not hasattr(study, "set_metric_names"):
        return
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


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
    problem = problem_hash(inst, base, cat)
    store = storage_for(storage, inst)          # a bad storage is refused before the MILP runs
    milp = solve_instance(inst, base, cat)
    search = Search(inst, base, milp, cat, pareto)
    optuna.logging.set_verbosity(optuna.logging.ERROR)     # fleetopt reports failures itself, on one line
    name = study_name or (f"refine-{inst.name}-{inst.objective}" + (f"-pareto-{pareto}" if pareto else "")
                          + f"-{problem[:10]}")
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = open_study(name, store, search.directions(), sampler, problem, named=study_name is not None)
    dead = fail_dead_trials(study)
    if dead:
        warnings.warn(f"study '{name}': {dead} trial(s) left RUNNING by a killed run marked failed", FleetoptWarning,
                      stacklevel=2)
    owner = _owner()
    study.set_user_attr(RUN_ATTR + owner, time.time())
    before = len(study.trials)
    if not any(t.state.name in ("COMPLETE", "WAITING") for t in study.trials):     # the MILP plan first
        study.enqueue_trial(search.seed_params())
    stop: list[int] = []

    _name_metrics(study, search.metric_names())

    def objective(trial):
        trial.set_user_attr(OWNER_ATTR, owner)
        try:
            inst_t, topo = search.suggest(trial)
            res = search.evaluate(inst_t, topo)
        except optuna.TrialPruned as e:             # why, for the dashboard and the history plot
            trial.set_user_attr(PRUNE_ATTR, str(e) or "pruned")
            raise
        trial.set_user_attr("topology", res["topology"])
        return search.values(res)

    bar = None
    if progress:                                    # on stderr, from 2 s on
        from tqdm import tqdm

        bar = tqdm(total=trials, desc="refine", unit="trial", delay=2.0, leave=False, dynamic_ncols=True)

    def halt(study_, trial_) -> None:
        if bar is not None:
            bar.update(1)
        if stop:
            study_.stop()

    from fleetopt.procs import stop_on_signals

    try:
        with stop_on_signals(lambda signum: stop.append(signum)):
            study.optimize(objective, n_trials=trials, timeout=timeout_s,
                           catch=(FloatingPointError, ZeroDivisionError), callbacks=[halt])
    except Exception as e:     # only a storage that failed to write is turned into one line
        why = _write_failure(store, e)
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
           "seconds": time.perf_counter() - t0, "seed": seed,
           "metric_names": search.metric_names(), "history": history(study)}
    if verify:                       # the refined plan, knobs included, request by request
        from fleetopt.simulate.run import misses, simulate

        v = simulate(inst_b, base, topo_b, verify_requests, seed, cat)
        out["verification"] = {"fleet": v["fleet"], "pools": v["pools"], "deviation": v["deviation"], "sim": v["sim"],
                               "slo_missed": any(p["requests"] and misses(inst, p) for p in v["pools"])}
    if pareto:
        col = PARETO[pareto][0]
        out["pareto"] = sorted(({"trial": t.number, key: t.values[0], col: t.values[1],
                                 "topology": t.user_attrs.get("topology")} for t in study.best_trials),
                               key=lambda r: r[col])
    return out
