"""Which study a refine run resumes, and who ran its trials.

* the default study name carries a hash of the problem (``problem_hash``: the instance
  after ``--set``, the files it reads, the catalog entries it uses), so another problem
  starts another study; a study named with ``--study`` that holds another problem is refused;
* each trial records its host and process; on resume, RUNNING trials of processes that
  are gone are marked FAIL (``fail_dead_trials``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import warnings
from typing import Any, Literal

from fleetopt.errors import FleetoptError
from fleetopt.problem import Problem
from fleetopt.records import to_builtins
from fleetopt.workload_files import data_files

Direction = Literal["minimize", "maximize"]
"""An objective's direction, as Optuna names it."""

OWNER_ATTR = "fleetopt_owner"
RUN_ATTR = "fleetopt_run:"
"""A study attribute per process that ran trials on it (``RUN_ATTR + owner_record()``)."""
PROBLEM_ATTR = "fleetopt_problem"
PRUNE_ATTR = "pruned_because"
"""A pruned trial's user attribute: why (the power cap, an inventory, an SLO, ...)."""
STALE_UNOWNED_S = 60.0
"""A RUNNING trial without an owner record (killed between its creation and the record)
is taken as dead after this long."""


def problem_hash(problem: Problem) -> str:
    """What a study's trials depend on: the instance after overrides (not its name or
    description), the contents of the files it reads, and the catalog entries it uses."""
    inst, catalog = problem.instance, problem.catalog
    d = to_builtins(inst)
    d.pop("name", None)
    d.pop("description", None)
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
    for _, path in data_files(inst.workload):
        try:
            h.update(problem.path(path).read_bytes())
        except OSError:
            pass
    entries = [catalog.model(inst.model)] + [catalog.gpu(g.id) for g in inst.gpus]
    h.update(json.dumps([to_builtins(e) for e in entries], sort_keys=True).encode())
    return h.hexdigest()


def owner_record() -> str:
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


def fail_dead_trials(study: Any) -> int:
    """Mark FAIL the RUNNING trials whose process is gone (on this host).  A trial that
    has not recorded its process yet (killed in between) is dead when every process that
    ran on the study is gone, or when it is older than STALE_UNOWNED_S.  Returns how many."""
    from optuna.trial import TrialState  # heavy: Optuna

    n = 0
    now = datetime.datetime.now()
    runs = [k[len(RUN_ATTR):] for k in study.user_attrs if k.startswith(RUN_ATTR)]
    others_alive = any(_alive(o) is not False for o in runs if o != owner_record())
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


def open_study(name: str, storage: Any, directions: list[Direction], sampler: Any, problem: str, named: bool) -> Any:
    """Create or resume the study; a resumed one must hold the same problem (``problem``,
    a ``problem_hash``): a study named by the user that holds another is refused."""
    import optuna  # heavy: Optuna

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


def history(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study in order: its state, its objective values (None unless
    complete) and, for a pruned one, why."""
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append({"trial": t.number, "state": t.state.name, "values": list(t.values) if t.values else None,
                    "pruned_because": t.user_attrs.get(PRUNE_ATTR), "topology": t.user_attrs.get("topology")})
    return out


def name_metrics(study: Any, names: list[str]) -> None:
    """``study.set_metric_names`` (experimental in Optuna, hence its warning silenced);
    a study that already has them, or an Optuna without it, is left as it is."""
    if getattr(study, "metric_names", None) == names or not hasattr(study, "set_metric_names"):
        return
    import optuna  # heavy: Optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
