"""A sweep's spec and its cases: validated, expanded and keyed before anything runs.

A spec (YAML, validated like instances) names a base instance and how cases vary it:

* ``grid``: axes combined as a cartesian product.  An axis is either ``path: [values]``
  (an instance field path, as ``--set`` takes it) or a named axis whose values each carry
  their own overrides: ``name: [{value: 0.1, set: {path: value, ...}}, ...]`` (to move
  several fields together, e.g. the two weights of a traffic mix);
* ``cases``: an explicit list of ``{path: value, ...}`` override sets;
* ``random``: ``samples`` cases drawn with ``seed`` from ``ranges`` (uniform floats,
  ``[lo, hi]``) and ``choices`` (lists);
* ``instances``: a folder of instance files instead of a base (one case per file).

Each case has a stable ``case_id``: a hash of the case's instance as it will be solved
(the base's content with the case's overrides applied, the contents of the files it
reads) and its labels, so editing the base re-runs exactly the cases it changes.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from fleetopt.catalog import Catalog, load_catalog
from fleetopt.errors import FleetoptError
from fleetopt.files import read_yaml_mapping
from fleetopt.instance import Instance
from fleetopt.loading import apply_set, check_instance, load_instance_data, validate_instance
from fleetopt.records import Meta, Record, convert, field, to_builtins
from fleetopt.sweeps.rows import axis_types
from fleetopt.workload_files import data_files, resolve_path

RHS_PATHS = ("power.facility_cap_mw",)   # and gpus.N.max_gpus: fields the columns do not depend on


class AxisValue(Record, kw_only=True):
    """A grid value that sets several fields: ``{value: label, set: {path: value, ...}}``."""

    value: float | int | str | bool | None
    set: dict[str, Any]


class RandomSpec(Record, kw_only=True):
    """Random cases: ``samples`` draws, uniform over ``ranges`` and ``choices`` by path."""

    samples: Annotated[int, Meta(gt=0, le=1_000_000)]
    seed: int = 0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    choices: dict[str, list[Any]] = field(default_factory=dict)


class SweepSpec(Record, kw_only=True):
    """A sweep: a base instance with a grid or random cases of ``--set`` paths, or a
    folder of instances."""

    schema_version: Literal[1] = 1
    name: str
    base: str | None = None
    """The base instance (path relative to the spec)."""
    instances: str | None = None
    """A folder of instance files (instead of base + variations)."""
    grid: Annotated[dict[str, Annotated[list[Any], Meta(min_length=1)]], Meta(min_length=1)] | None = None
    """Axis -> values; a value that is a mapping with exactly ``value`` and ``set`` is an
    ``AxisValue`` (it sets several fields under one label)."""
    cases: Annotated[list[dict[str, Any]], Meta(min_length=1)] | None = None
    random: RandomSpec | None = None

    def __post_init__(self) -> None:
        if (self.base is None) == (self.instances is None):
            raise ValueError("give exactly one of 'base' or 'instances'")
        if self.base is not None and sum(x is not None for x in (self.grid, self.cases, self.random)) != 1:
            raise ValueError("with 'base', give exactly one of 'grid', 'cases' or 'random'")


def load_spec(path: str | Path) -> tuple[SweepSpec, Path]:
    """The spec in ``path``, validated (one line naming the field otherwise), and its folder."""
    data = read_yaml_mapping(path, "sweep spec")
    spec = convert(data, SweepSpec, str(path))
    for name, vals in (spec.grid or {}).items():
        for i, v in enumerate(vals):
            if isinstance(v, dict) and set(v) == {"value", "set"}:
                vals[i] = convert(v, AxisValue, f"{path}: grid.{name}.{i}")
    for name, (lo, hi) in (spec.random.ranges.items() if spec.random else ()):
        if not lo <= hi:
            raise FleetoptError(f"{path}: random.ranges.{name}: must be [lo, hi] with lo <= hi, got [{lo:g}, {hi:g}]")
    for name, vals in (spec.random.choices.items() if spec.random else ()):
        if not vals:
            raise FleetoptError(f"{path}: random.choices.{name}: must have at least one value")
    return spec, Path(path).resolve().parent


def _fmt(v: Any) -> str:
    """A value as ``--set`` takes it (JSON is YAML)."""
    return json.dumps(v)


def _file_digest(inst: Instance, base: Path) -> str:
    """A hash of the files the instance reads (a CSV histogram, CDF or trace)."""
    h = hashlib.sha1()
    for _, path in data_files(inst.workload):
        try:
            h.update(resolve_path(base, path).read_bytes())
        except OSError:
            pass
    return h.hexdigest()


def _problem(inst: Instance, base: Path) -> str:
    """The case's problem as it will be solved: its instance's content (not its name) and
    the files it reads, as canonical text."""
    d = to_builtins(inst)
    for k in ("name", "description"):
        d.pop(k, None)
    return json.dumps([d, _file_digest(inst, base)], sort_keys=True, default=str)


def _case_id(problem: str, labels: dict[str, Any]) -> str:
    """A case's id: its problem and its labels (what its row holds)."""
    key = json.dumps([problem, labels], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _copy_path(data: dict[str, Any], path: str) -> None:
    """Copy the containers along ``path`` in ``data`` (shallowly), so an override applied
    there leaves the containers shared with other cases untouched."""
    node: Any = data
    for k in [k for k in path.strip().split(".") if k][:-1]:
        if isinstance(node, dict) and isinstance(node.get(k), (dict, list)):
            node[k] = copy.copy(node[k])
            node = node[k]
        elif isinstance(node, list) and k.isdigit() and int(k) < len(node) and isinstance(node[int(k)], (dict, list)):
            node[int(k)] = copy.copy(node[int(k)])
            node = node[int(k)]
        else:
            return


def _label_text(labels: dict[str, Any]) -> str:
    """``axis=value, ...`` for messages."""
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def expand(spec: SweepSpec, spec_dir: Path, catalog: Catalog | None = None,
           source: str = "sweep spec") -> list[dict[str, Any]]:
    """Every case, built and validated before anything runs: {case_id, instance (path),
    labels {axis: value}, overrides [k=v, ...], inst (the validated instance), base (its
    folder)}.  A missing base, an unknown axis path, a bad value, an unknown model or GPU
    in any case is one line naming the case (FleetoptError, exit 2)."""
    if catalog is None:
        catalog = load_catalog()
    cases: list[dict[str, Any]] = []
    if spec.instances is not None:
        folder = (spec_dir / spec.instances).resolve()
        files = sorted(folder.glob("*.yaml"))
        if not files:
            raise FleetoptError(f"{source}: instances: no .yaml files in '{folder}'")
        for f in files:
            cases.append({"instance": str(f), "labels": {"instance": f.stem}, "overrides": []})
    else:
        assert spec.base is not None, "the spec names instances or a base (checked on load)"
        base = str((spec_dir / spec.base).resolve())
        if spec.grid is not None:
            axes = list(spec.grid.items())
            for combo in itertools.product(*(vals for _, vals in axes)):
                labels, sets = {}, []
                for (name, _), v in zip(axes, combo):
                    if isinstance(v, AxisValue):
                        labels[name] = v.value
                        sets += [f"{k}={_fmt(x)}" for k, x in v.set.items()]
                    else:
                        labels[name] = v
                        sets.append(f"{name}={_fmt(v)}")
                cases.append({"instance": base, "labels": labels, "overrides": sets})
        elif spec.cases is not None:
            for c in spec.cases:
                cases.append({"instance": base, "labels": dict(c),
                              "overrides": [f"{k}={_fmt(v)}" for k, v in c.items()]})
        else:
            r = spec.random
            assert r is not None
            rng = np.random.default_rng(r.seed)
            for _ in range(r.samples):
                labels = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(r.ranges.items())}
                labels.update({k: v[int(rng.integers(len(v)))] for k, v in sorted(r.choices.items())})
                cases.append({"instance": base, "labels": labels,
                              "overrides": [f"{k}={_fmt(v)}" for k, v in labels.items()]})
    axes = list(dict.fromkeys(k for c in cases for k in c["labels"]))
    data: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for i, c in enumerate(cases):
        path = c["instance"]
        where = f"{source}: case {i + 1} ({_label_text(c['labels'])})"
        try:
            if path not in data:
                data[path] = load_instance_data(path)
            d = dict(data[path])
            for a in c["overrides"]:
                _copy_path(d, a.split("=", 1)[0])       # the base's data stays as read
                apply_set(d, a)
            inst = validate_instance(d)
            check_instance(inst, catalog)
        except FleetoptError as e:
            msg = str(e)
            if path not in data:                    # the base itself: not one case's fault
                raise FleetoptError(f"{source}: {'base' if spec.base else 'instances'}: {msg}") from None
            raise FleetoptError(f"{where}: {msg}") from None
        base_dir = Path(path).resolve().parent
        problem = _problem(inst, base_dir)
        c.update(inst=inst, base=str(base_dir), case_id=_case_id(problem, c["labels"]), axes=axes)
        if problem in seen:
            j = seen[problem]
            raise FleetoptError(f"{where}: the same problem as case {j + 1} ({_label_text(cases[j]['labels'])})")
        seen[problem] = i
    types = axis_types(cases)
    for c in cases:
        c["axis_types"] = types
    return cases


def column_key(case: dict[str, Any], also: tuple[str, ...] = ()) -> str:
    """Cases with equal keys share sized columns (they differ only in right-hand sides)."""
    skip = RHS_PATHS + also
    sets = sorted(s for s in case["overrides"]
                  if not s.split("=", 1)[0].startswith(skip) and ".max_gpus=" not in s)
    return json.dumps([case["instance"], sets])


def group_key(case: dict[str, Any]) -> str:
    """Cases sent to one worker together: they also share routed traffic and pool shapes
    (they differ in arrival rate or right-hand sides only)."""
    return column_key(case, ("workload.arrival_rate",))
