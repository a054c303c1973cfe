"""Reading an instance: its YAML (a file, ``-`` for stdin, or a mapping), ``--set``
overrides, validation into the records of ``fleetopt.instance``, and the checks that need
the catalog.  Every mistake is one ``FleetoptError`` line naming the field.

An instance read from a file remembers the file (``source_of``): its relative paths
(``workload.distribution.path``, ``calibration``) resolve against the file's folder; an
instance given as a mapping resolves them against the current folder.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from fleetopt.calibration_files import apply_instance_calibration
from fleetopt.catalog import Catalog, Model
from fleetopt.errors import FleetoptError
from fleetopt.files import parse_yaml, read_yaml_mapping
from fleetopt.instance import SCHEMA_VERSION, Instance
from fleetopt.records import convert, to_builtins

Overrides = Mapping[str, Any] | Sequence[str]
"""``--set`` overrides: ``{"workload.arrival_rate": 300}`` (values as they are) or
``["workload.arrival_rate=300"]`` (values parsed as YAML, as the command line takes them)."""

_SOURCE = "_fleetopt_source"
_OVERRIDES = "_fleetopt_overrides"


def _parse_value(text: str) -> Any:
    """A ``--set`` value parsed as YAML (``300`` a number, ``[1, 2]`` a list); text that is
    not YAML stays text."""
    try:
        return parse_yaml(text)
    except yaml.YAMLError:
        return text


def set_value(data: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at ``path`` (``pools.boundaries.0``: mappings by key, lists by index)
    to ``value`` in place, creating the mappings on the way; one line naming the path
    when it does not lead to a field."""
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise FleetoptError(f"--set {path}: empty key path")
    node: Any = data
    for i, k in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(node, list):
            try:
                node = node[int(k)]
            except (ValueError, IndexError):
                raise FleetoptError(f"--set {path}: '{k}' is not an index of "
                                    f"{'.'.join(keys[:i]) or 'the list'}") from None
            continue
        if not isinstance(node, dict):
            raise FleetoptError(f"--set {path}: '{'.'.join(keys[:i])}' is not a mapping")
        if k not in node or node[k] is None:
            node[k] = [] if nxt.isdigit() else {}
        node = node[k]
    last = keys[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise FleetoptError(f"--set {path}: '{last}' is not an index of the list") from None
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise FleetoptError(f"--set {path}: parent is not a mapping")


def apply_set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override in place (value parsed as YAML; list items by index)."""
    if "=" not in assignment:
        raise FleetoptError(f"--set {assignment}: expected key.path=value")
    path, text = assignment.split("=", 1)
    if not [k for k in path.strip().split(".") if k]:
        raise FleetoptError(f"--set {assignment}: empty key path")
    set_value(data, path, _parse_value(text))


def apply_overrides(data: dict[str, Any], overrides: Overrides | None) -> None:
    """Apply ``overrides`` (``Overrides``) in order, in place."""
    if overrides is None:
        return
    if isinstance(overrides, Mapping):
        for path, value in overrides.items():
            set_value(data, str(path), copy.deepcopy(value))
    else:
        for assignment in overrides:
            apply_set(data, assignment)


def load_instance_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML mapping of an instance file; ``-`` reads standard input."""
    if str(path) == "-":
        try:
            data = parse_yaml(sys.stdin.read())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise FleetoptError(f"<stdin>:{where}: not valid YAML "
                                f"({getattr(exc, 'problem', '') or 'syntax error'})") from None
        if not isinstance(data, dict):
            raise FleetoptError("<stdin>: an instance file must be a YAML mapping")
        return data
    return read_yaml_mapping(path, "instance file")


def validate_instance(data: Any, source: str = "") -> Instance:
    """Validate instance data (``gpus`` entries may be bare ids: ``[h100, b200]``);
    ``source`` prefixes every error (the file's name)."""
    prefix = f"{source}: " if source else ""
    if isinstance(data, dict):
        v = data.get("schema_version", SCHEMA_VERSION)
        if v != SCHEMA_VERSION:
            raise FleetoptError(f"{prefix}schema_version: this fleetopt reads schema_version {SCHEMA_VERSION}, "
                                f"got {v!r}")
        if isinstance(data.get("gpus"), list):
            data = {**data, "gpus": [{"id": g} if isinstance(g, str) else g for g in data["gpus"]]}
    inst: Instance = convert(data, Instance, source)
    return inst


def tp_problem(model: Model, tp: int) -> str | None:
    """Why ``tp`` cannot shard ``model``'s attention (None when it can)."""
    if getattr(model, "attention", "gqa") != "gqa":
        return None
    if model.heads % tp:
        return f"tp {tp} does not divide {model.id}'s {model.heads} attention heads"
    if tp > model.kv_heads and tp % model.kv_heads:
        return f"tp {tp} is not a multiple of {model.id}'s {model.kv_heads} KV heads"
    return None


def check_instance(inst: Instance, catalog: Catalog, source: str = "") -> None:
    """The checks that need the catalog, each a user mistake (``FleetoptError``, exit 2)
    rather than an infeasible plan: the model and every GPU id known, no GPU listed twice,
    every TP dividing the model's attention heads (and a multiple of its KV heads above
    them), the serving power cap at least every candidate GPU's idle power, the last
    window and boundaries within the model's context window."""
    prefix = f"{source}: " if source else ""
    try:
        model = catalog.model(inst.model)
    except FleetoptError as e:
        raise FleetoptError(f"{prefix}model: {e}") from None
    seen: dict[str, int] = {}
    idle: dict[str, float] = {}
    for i, g in enumerate(inst.gpus):
        try:
            gpu = catalog.gpu(g.id)
        except FleetoptError as e:
            raise FleetoptError(f"{prefix}gpus.{i}.id: {e}") from None
        if gpu.id in seen:
            raise FleetoptError(f"{prefix}gpus.{i}.id: '{g.id}' is the GPU of gpus.{seen[gpu.id]} ({gpu.id}); "
                                f"list each GPU once")
        seen[gpu.id] = i
        idle[gpu.id] = gpu.idle_w
        for j, tp in enumerate(g.tp):
            why = tp_problem(model, tp)
            if why:
                raise FleetoptError(f"{prefix}gpus.{i}.tp.{j}: {why}")
    ctx = int(getattr(model, "max_context_tokens", 0) or 0)
    pools = inst.pools
    if ctx and pools.max_window is not None and pools.max_window > ctx:
        raise FleetoptError(f"{prefix}pools.max_window: {pools.max_window} is longer than {model.id}'s context window "
                            f"of {ctx} tokens")
    if ctx and pools.boundaries != "auto" and pools.boundaries[-1] > ctx:
        raise FleetoptError(f"{prefix}pools.boundaries.{len(pools.boundaries) - 1}: {pools.boundaries[-1]} is longer "
                            f"than {model.id}'s context window of {ctx} tokens")
    cap = inst.serving.power_cap_w
    if cap is not None:
        gid, w = max(idle.items(), key=lambda kv: kv[1])
        if cap < w:
            raise FleetoptError(f"{prefix}serving.power_cap_w: must be at least the idle power of every candidate "
                                f"GPU ({gid}: {w:g} W), got {cap:g}")


def remember_source(inst: Instance, source: str, base: Path) -> Instance:
    """Record that ``inst`` was read from ``source`` (a file name, for errors) and that its
    relative paths resolve against ``base``."""
    setattr(inst, _SOURCE, (source, base))
    return inst


def remember_overrides(inst: Instance, overrides: Overrides | None) -> Instance:
    """Record the overrides ``inst`` was read with (a plan's inputs name them)."""
    if isinstance(overrides, Mapping):
        said = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    else:
        said = [str(s) for s in overrides or ()]
    setattr(inst, _OVERRIDES, tuple(said))
    return inst


def overrides_of(inst: Instance) -> list[str]:
    """The overrides ``inst`` was read with, as ``--set`` takes them (none when unknown)."""
    return list(getattr(inst, _OVERRIDES, ()))


def source_of(inst: Instance) -> tuple[str, Path]:
    """(the file it was read from, or "", the folder its relative paths resolve against:
    the file's, else the current folder)."""
    got = getattr(inst, _SOURCE, None)
    return got if got is not None else ("", Path.cwd())


def revalidate(inst: Instance, catalog: Catalog) -> Instance:
    """``inst`` validated again, as it is now (its fields may have been edited since it was
    read: ``inst.workload.arrival_rate = -5`` is refused here with the line a file or
    ``--set`` gets), and checked against ``catalog``.  Returns a fresh copy that
    remembers the same source."""
    source, base = source_of(inst)
    fresh = validate_instance(to_builtins(inst), source)
    check_instance(fresh, catalog, source)
    remember_overrides(fresh, overrides_of(inst))
    return remember_source(fresh, source, base)


def load_instance(source: str | os.PathLike[str] | Mapping[str, Any], overrides: Overrides | None = None,
                  catalog: Catalog | None = None) -> Instance:
    """Read, override and validate an instance: a file (``-`` for stdin) or a mapping.
    With ``catalog``, also ``check_instance``.  An instance's ``calibration`` field becomes
    the calibration in use (unless the command line chose one)."""
    if isinstance(source, Mapping):
        data, name, base = copy.deepcopy(dict(source)), "", Path.cwd()
    else:
        data, name = load_instance_data(source), str(source)
        base = Path.cwd() if name == "-" else Path(source).resolve().parent
    apply_overrides(data, overrides)
    inst = validate_instance(data, name)
    if catalog is not None:
        check_instance(inst, catalog, name)
    apply_instance_calibration(inst.calibration, base)
    remember_overrides(inst, overrides)
    return remember_source(inst, name, base)
