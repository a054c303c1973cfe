"""``fleetopt sweep``: many solves from one spec, resumable, local or on a Dask cluster.

A spec (YAML, validated like instances) names a base instance and how cases vary it:

* ``grid``: axes combined as a cartesian product.  An axis is either ``path: [values]``
  (an instance field path, as ``--set`` takes it) or a named axis whose values each carry
  their own overrides: ``name: [{value: 0.1, set: {path: value, ...}}, ...]`` (to move
  several fields together, e.g. the two weights of a traffic mix);
* ``cases``: an explicit list of ``{path: value, ...}`` override sets;
* ``random``: ``samples`` cases drawn with ``seed`` from ``ranges`` (uniform floats,
  ``[lo, hi]``) and ``choices`` (lists);
* ``instances``: a folder of instance files instead of a base (one case per file).

Before any case runs, every case is built and validated (the base must exist, every
axis path must be a field, every value valid, the model and GPUs known): a bad spec is one
line and exit 2, and nothing is written.

Each case has a stable ``case_id``: a hash of the case's instance as it will be solved
(the base's content with the case's overrides applied, the contents of the files it
reads) and its labels, so editing the base re-runs exactly the cases it changes.  Each
case is written, as it finishes, to ``OUT/cases/<case_id>.parquet`` by an atomic rename,
so a sweep killed at any moment (SIGKILL included) keeps every finished case and never
holds half a row or a duplicate; re-running the command skips the finished cases and
removes the rows of cases no longer in the spec.  A case that fails while solving is
recorded with its error and the sweep goes on (``--retry-failed`` runs those again).

Every row has the same declared Arrow schema (``row_schema``: the case's id and labels, one
``axis:<name>`` column per axis of the spec, typed over all its values, then ``status``,
``error`` and the metrics), so pandas, ``pyarrow.dataset``, duckdb and polars read
``OUT/cases`` as one table; a failed or infeasible case has nulls in its metrics, its
``status`` and its ``error``.  ``OUT/sweep.json`` records the schema: rows written by
another fleetopt or another form of the spec are brought to it on resume.

With ``--scheduler`` (Dask), the workers share nothing with the client but the network:
each chunk travels with the contents of the files its instances read, the client's catalog
and calibration, and the workers return rows, which the client writes atomically as
each chunk completes (no shared filesystem; resume and one row per case as with local
workers).

An output folder belongs to one spec (``OUT/sweep.json`` names it, and is rewritten only
when it changes, so a finished sweep resumes on a read-only disk); another spec is
refused unless ``--force``.  One sweep at a time writes a folder (an ``flock`` the kernel
drops when its holder dies).  Ctrl-C or SIGTERM stops the workers at once and cancels
the queued cases (finished rows stay); local workers die with their parent, however it
ends; temporaries of killed runs are removed on the next.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from fleetopt import FleetoptError, FleetoptWarning, Interrupted
from fleetopt.schema import Meta, Record, convert, field, int_between, to_builtins

if TYPE_CHECKING:
    import pyarrow as pa

RHS_PATHS = ("power.facility_cap_mw",)   # and gpus.N.max_gpus: fields the columns do not depend on


class AxisValue(Record, kw_only=True):
    """A grid value that sets several fields: ``{value: label, set: {path: value, ...}}``."""

    value: Union[float, int, str, bool, None]
    set: dict[str, Any]


class RandomSpec(Record, kw_only=True):
    samples: int_between(gt=0, le=1_000_000)
    seed: int = 0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    choices: dict[str, list[Any]] = field(default_factory=dict)


class SweepSpec(Record, kw_only=True):
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

    def __post_init__(self):
        if (self.base is None) == (self.instances is None):
            raise ValueError("give exactly one of 'base' or 'instances'")
        if self.base is not None and sum(x is not None for x in (self.grid, self.cases, self.random)) != 1:
            raise ValueError("with 'base', give exactly one of 'grid', 'cases' or 'random'")


def load_spec(path: str | Path) -> tuple[SweepSpec, Path]:
    from fleetopt.files import read_yaml_mapping
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
    return json.dumps(v)


def input_files(inst: Any, base: Path) -> list[tuple[str | None, Path]]:
    """The files the instance reads (a CSV histogram, CDF or trace): (mixture component
    name, or None for the distribution itself; resolved path)."""
    from fleetopt.fleet import _resolve

    dist = inst.workload.distribution
    comps = list(dist.components.items()) if dist.type == "mixture" else [(None, dist)]
    out = []
    for name, c in comps:
        wl = c.workload if name is not None else c
        if getattr(wl, "path", None):
            out.append((name, _resolve(base, wl.path)))
    return out


def _file_digest(inst, base: Path) -> str:
    """A hash of the files the instance reads (a CSV histogram, CDF or trace)."""
    h = hashlib.sha1()
    for _, path in input_files(inst, base):
        try:
            h.update(path.read_bytes())
        except OSError:
            pass
    return h.hexdigest()


def _problem(inst, base: Path) -> str:
    """The case's problem as it will be solved: its instance's content (not its name) and
    the files it reads, as canonical text."""
    d = to_builtins(inst)
    for k in ("name", "description"):
        d.pop(k, None)
    return json.dumps([d, _file_digest(inst, base)], sort_keys=True, default=str)


def _case_id(problem: str, labels: dict) -> str:
    """A case's id: its problem and its labels (what its row holds)."""
    key = json.dumps([problem, labels], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _copy_path(data: dict, path: str) -> None:
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


def _label_text(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def expand(spec: SweepSpec, spec_dir: Path, catalog=None, source: str = "sweep spec") -> list[dict]:
    """Every case, built and validated before anything runs: {case_id, instance (path),
    labels {axis: value}, overrides [k=v, ...], inst (the validated instance), base (its
    folder)}.  A missing base, an unknown axis path, a bad value, an unknown model or GPU
    in any case is one line naming the case (FleetoptError, exit 2)."""
    from fleetopt.instance import apply_set, check_instance, load_instance_data, validate_instance

    if catalog is None:
        from fleetopt.catalog import load_catalog

        catalog = load_catalog()
    cases = []
    if spec.instances is not None:
        folder = (spec_dir / spec.instances).resolve()
        files = sorted(folder.glob("*.yaml"))
        if not files:
            raise FleetoptError(f"{source}: instances: no .yaml files in '{folder}'")
        for f in files:
            cases.append({"instance": str(f), "labels": {"instance": f.stem}, "overrides": []})
    else:
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
                cases.append({"instance": base, "labels": dict(c), "overrides": [f"{k}={_fmt(v)}" for k, v in c.items()]})
        else:
            import numpy as np

            r = spec.random
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


def _column_key(case: dict, also: tuple[str, ...] = ()) -> str:
    """Cases with equal keys share sized columns (they differ only in right-hand sides)."""
    skip = RHS_PATHS + also
    sets = sorted(s for s in case["overrides"]
                  if not s.split("=", 1)[0].startswith(skip) and ".max_gpus=" not in s)
    return json.dumps([case["instance"], sets])


def _group_key(case: dict) -> str:
    """Cases sent to one worker together: they also share routed traffic and pool shapes
    (they differ in arrival rate or right-hand sides only)."""
    return _column_key(case, ("workload.arrival_rate",))


# ---- worker side -------------------------------------------------------------------------

_CACHE: dict = {}       # column key -> (dist, rate, raw columns): cases differing in RHS only
_SHAPES: dict = {}      # rate-independent key -> generate()'s cache (routed traffic, pool shapes)


def _remember(d: dict, key, value, size: int = 16):
    if len(d) >= size:
        d.pop(next(iter(d)))
    d[key] = value
    return value


def _worker_init(parent_pid: int) -> None:
    """A local worker: dies with its parent (``fleetopt.procs.die_with_parent``), leaves
    Ctrl-C and SIGTERM handling to the parent, which stops it itself."""
    import signal

    from fleetopt.files import close_inherited_locks
    from fleetopt.procs import die_with_parent, ignore_interrupts

    die_with_parent(parent_pid)
    close_inherited_locks()
    ignore_interrupts()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _shape_key(inst, base: Path) -> str:
    """Everything the routed traffic and the pool shapes depend on (not the arrival rate,
    power, objective, solver, inventories or the utilisation cap)."""
    d = to_builtins(inst)
    d["workload"].pop("arrival_rate", None)
    for k in ("power", "objective", "solver", "name"):
        d.pop(k, None)
    d["slo"].pop("max_utilization", None)
    for g in d["gpus"]:
        g.pop("max_gpus", None)
    return json.dumps([str(base), d], sort_keys=True)


def _cached_columns(inst, base, cat, key: str):
    """Raw columns for the case (reused across cases with the same column key; otherwise
    the routed traffic and pool shapes are reused across cases with the same shape key)."""
    import dataclasses

    from fleetopt.columns import configs, generate
    from fleetopt.fleet import build_workload

    hit = _CACHE.get(key)
    if hit is None:
        skey = _shape_key(inst, base)
        shapes = _SHAPES.get(skey)
        if shapes is None:
            dist, _ = build_workload(inst, base)
            shapes = _remember(_SHAPES, skey, {"dist": dist})
        dist = shapes["dist"]
        rate = build_workload(inst, base)[1] if inst.workload.arrival_rate == "trace" else float(inst.workload.arrival_rate)
        hit = _remember(_CACHE, key, (dist, rate, generate(inst, dist, rate, cat, cache=shapes)))
    dist, rate, raw = hit
    fresh = configs(inst, cat)               # inventories may differ between cases
    raw = dataclasses.replace(raw, configs=fresh)
    return dist, rate, raw


def solve_case(case: dict, reuse: bool = True, catalog_files: tuple[str, ...] = (), catalog: Any = None) -> dict:
    """Solve one case; returns its row (every column of ``row_schema``; a failed or
    infeasible case has nulls, its ``status`` and its ``error``).  ``reuse=False`` solves
    from scratch (the benchmark's baseline); ``catalog``: the loaded catalog (else read
    from ``catalog_files``)."""
    from fleetopt.catalog import load_catalog
    from fleetopt.solve import finish_solve

    t0 = time.perf_counter()
    types = case.get("axis_types") or axis_types([case])
    row: dict[str, Any] = {"case_id": case["case_id"], "instance": Path(case["instance"]).stem,
                           "overrides": json.dumps(case["overrides"])}
    for k in types:                                 # every axis of the spec, so all rows agree
        row[f"axis:{k}"] = _axis_value(case["labels"].get(k), types[k])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", FleetoptWarning)
        try:
            inst, base = case["inst"], Path(case["base"])
            cat = catalog if catalog is not None else load_catalog(tuple(catalog_files))
            if inst.objective == "max_throughput" or not reuse:
                from fleetopt.solve import solve_instance

                res = solve_instance(inst, base, cat)
            else:
                dist, rate, raw = _cached_columns(inst, base, cat, _column_key(case))
                res = finish_solve(inst, base, cat, dist, rate, raw, t0)
            f = res["fleet"]
            h, two = res["baselines"]["homogeneous"], res["baselines"]["two_pool_paper"]
            row.update({"status": res["solver"]["status"], "error": None, "topology": res["topology"],
                        "pools": len({p["hi_tokens"] for p in res["pools"]}),     # length ranges (a mixed one once)
                        "boundaries": ",".join(str(int(h)) for h in sorted({p["hi_tokens"] for p in res["pools"]})[:-1]),
                        "gpu_types": ",".join(sorted({p["gpu"] for p in res["pools"]})),
                        "instances_total": f["instances"], "gpus": f["gpus"], "it_power_kw": f["it_power_kw"],
                        "facility_power_kw": f["facility_power_kw"], "tokens_per_joule": f["tokens_per_joule"],
                        "tok_per_w_paper": f["tok_per_w_paper"], "arrival_rate": f["arrival_rate"],
                        "cost_per_hour": f["cost_per_hour"], "energy_per_query_wh": f["energy_per_query_wh"],
                        "homog_topology": h["topology"] if h else None,
                        "homog_tokens_per_joule": h["tokens_per_joule"] if h else None,
                        "homog_gpus": h["gpus"] if h else None,
                        "two_pool_tokens_per_joule": two["tokens_per_joule"] if two else None,
                        "gain_vs_homog": res["gains"]["vs_homogeneous"]["tokens_per_joule"] if h else None,
                        "demand_scale": (res.get("throughput") or {}).get("demand_scale"),
                        "gap": res["solver"]["gap"], "solver_seconds": res["solver"]["solve_seconds"]})
        except Exception as e:     # noqa: BLE001  (a failed case is a row, not a stopped sweep)
            from fleetopt import InfeasibleError, NoPlanInTimeError

            row.update({"status": ("infeasible" if isinstance(e, InfeasibleError) else
                                   "no_plan_in_time" if isinstance(e, NoPlanInTimeError) else "failed"),
                        "error": f"{type(e).__name__}: {e}"})
    row["warnings"] = "; ".join(dict.fromkeys(str(w.message) for w in said
                                              if issubclass(w.category, FleetoptWarning))) or None
    row["seconds"] = time.perf_counter() - t0
    return row


def run_case(case: dict, out_dir: str, reuse: bool = True, catalog_files: tuple[str, ...] = ()) -> dict:
    """Solve one case and write its row atomically; returns the row."""
    row = solve_case(case, reuse, catalog_files)
    _write_row(Path(out_dir), row, row_schema(case.get("axis_types") or axis_types([case])))
    return row


def run_chunk(cases: list[dict], out_dir: str, reuse: bool = True, catalog_files: tuple[str, ...] = ()) -> list[dict]:
    """A local worker's chunk: each case solved and its row written (the folder is local)."""
    return [_brief(run_case(c, out_dir, reuse, catalog_files)) for c in cases]


def _brief(row: dict) -> dict:
    return {"case_id": row["case_id"], "status": row["status"], "error": row.get("error")}


# ---- the rows' declared schema --------------------------------------------------------

ROW_HEAD: tuple[tuple[str, str], ...] = (("case_id", "string"), ("instance", "string"), ("overrides", "string"))
ROW_BODY: tuple[tuple[str, str], ...] = (
    ("status", "string"), ("error", "string"), ("topology", "string"), ("pools", "int64"), ("boundaries", "string"),
    ("gpu_types", "string"), ("instances_total", "int64"), ("gpus", "int64"), ("it_power_kw", "float64"),
    ("facility_power_kw", "float64"), ("tokens_per_joule", "float64"), ("tok_per_w_paper", "float64"),
    ("arrival_rate", "float64"), ("cost_per_hour", "float64"), ("energy_per_query_wh", "float64"),
    ("homog_topology", "string"), ("homog_tokens_per_joule", "float64"), ("homog_gpus", "int64"),
    ("two_pool_tokens_per_joule", "float64"), ("gain_vs_homog", "float64"), ("demand_scale", "float64"),
    ("gap", "float64"), ("solver_seconds", "float64"), ("warnings", "string"), ("seconds", "float64"))
"""Every row's columns after the axes (``axis:<name>``, between ROW_HEAD and ROW_BODY)."""
METRICS: tuple[str, ...] = tuple(n for n, _ in ROW_BODY if n not in ("status", "error", "warnings", "seconds"))
"""The columns a solved case fills; a failed or infeasible one leaves them null."""
OPTIONAL_METRICS: tuple[str, ...] = ("homog_topology", "homog_tokens_per_joule", "homog_gpus",
                                     "two_pool_tokens_per_joule", "gain_vs_homog", "demand_scale")
"""Metrics null on a solved row too when they do not apply: a baseline that does not
exist (no feasible homogeneous fleet, no ``pools.paper_boundary``), the demand scale of an
objective other than max_throughput."""


def axis_types(cases: list[dict]) -> dict[str, str]:
    """Each axis's column type over every case of the spec: ``float64`` when all its
    values are numbers (not booleans), else ``string`` (values other than text as JSON)."""
    axes: list[str] = (list(cases[0]["axes"]) if cases and cases[0].get("axes")
                       else list(dict.fromkeys(k for c in cases for k in c["labels"])))
    out = {}
    for a in axes:
        vals = [c["labels"].get(a) for c in cases if c["labels"].get(a) is not None]
        num = bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        out[a] = "float64" if num else "string"
    return out


def _axis_value(v: Any, kind: str) -> Any:
    if v is None:
        return None
    if kind == "float64":
        return float(v)
    return v if isinstance(v, str) else json.dumps(v)


def row_schema(types: dict[str, str]) -> pa.Schema:
    """The declared Arrow schema of every row of a sweep with these axes (``axis_types``)."""
    import pyarrow as pa

    t = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    return pa.schema([pa.field(n, t[k]) for n, k in ROW_HEAD]
                     + [pa.field(f"axis:{a}", t[k]) for a, k in types.items()]
                     + [pa.field(n, t[k]) for n, k in ROW_BODY])


def schema_text(schema: pa.Schema) -> list[list[str]]:
    """A schema as [[name, type], ...] (recorded in sweep.json)."""
    return [[f.name, str(f.type)] for f in schema]


def _write_row(out: Path, row: dict, schema: pa.Schema) -> None:
    """One Parquet file per case with the declared schema (every column, nulls where a case
    left one empty, so every file of the dataset agrees), written to a hidden temporary name
    (``fleetopt.files.temp_name``) and renamed; nothing is left behind on failure."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fleetopt.files import temp_name

    extra = set(row) - set(schema.names)
    if extra:
        raise ValueError(f"row columns not in the declared schema: {sorted(extra)}")
    d = out / "cases"
    d.mkdir(parents=True, exist_ok=True)
    name = f"{row['case_id']}.parquet"
    tmp = d / temp_name(name)
    try:
        pq.write_table(pa.Table.from_pylist([row], schema=schema), tmp)
        os.replace(tmp, d / name)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:                     # a read-only folder: nothing was created there
            pass
        raise


def conform_rows(cdir: Path, schema: pa.Schema) -> tuple[int, int]:
    """Bring rows written with another schema (an earlier fleetopt, another spec's axes) to
    ``schema``: missing columns added as nulls, types cast, columns in order, each file
    rewritten atomically; a row that cannot be cast is removed, so its case runs again.
    Returns (rewritten, removed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fleetopt.files import temp_name

    rewritten = removed = 0
    for q in sorted(cdir.glob("*.parquet")):
        try:
            if pq.read_schema(q).equals(schema, check_metadata=False):
                continue
            t = pq.read_table(q)
            cols = []
            for f in schema:
                if f.name in t.column_names:
                    c = t.column(f.name)
                    cols.append(c if c.type == f.type else c.cast(f.type))
                else:
                    cols.append(pa.nulls(len(t), f.type))
            fixed = pa.Table.from_arrays(cols, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError):
            q.unlink(missing_ok=True)       # not readable or not castable: the case runs again
            removed += 1
            continue
        tmp = q.parent / temp_name(q.name)
        try:
            pq.write_table(fixed, tmp)
            os.replace(tmp, q)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        rewritten += 1
    return rewritten, removed


# ---- driver side -------------------------------------------------------------------------

def finished(out: Path, retry_failed: bool) -> set[str]:
    d = out / "cases"
    if not d.exists():
        return set()
    done = {p.stem for p in d.glob("*.parquet")}
    if retry_failed and done:
        import pandas as pd

        st = pd.read_parquet(d, columns=["case_id", "status"])
        done -= set(st.loc[st["status"] == "failed", "case_id"])
    return done


def chunks(cases: list[dict], size: int) -> list[list[dict]]:
    """Cases grouped for reuse (``_group_key``), each group cut into chunks of ``size``."""
    groups: dict[str, list[dict]] = {}
    for c in cases:
        groups.setdefault(_group_key(c), []).append(c)
    out = []
    for g in groups.values():
        out += [g[i:i + size] for i in range(0, len(g), size)]
    return out


MANIFEST = "sweep.json"


def _manifest(spec: SweepSpec, spec_path: str, cases: list[dict], schema: pa.Schema) -> str:
    from fleetopt.output import to_json

    return to_json({"spec": to_builtins(spec), "spec_path": str(Path(spec_path).resolve()),
                    "row_schema": schema_text(schema),
                    "cases": [{k: c[k] for k in ("case_id", "labels", "overrides")} for c in cases]}) + "\n"


def _owner_problem(out: Path, spec: SweepSpec, spec_path: str) -> str | None:
    """Why ``out`` holds another spec's results (None when it is this spec's, or new)."""
    try:
        held = json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        if (out / "cases").is_dir() and any((out / "cases").glob("*.parquet")):
            return "results of a sweep it does not name (no sweep.json)"
        return None
    except (OSError, ValueError):
        return "a sweep.json fleetopt cannot read"
    name = (held.get("spec") or {}).get("name") if isinstance(held, dict) else None
    path = held.get("spec_path") if isinstance(held, dict) else None
    if name == spec.name and path == str(Path(spec_path).resolve()):
        return None
    return f"the results of sweep '{name}' (spec {path})"


def _stop_local(ex) -> None:
    """Stop a ProcessPoolExecutor now: queued work cancelled, workers killed (a case cut
    short leaves no row: rows are renamed into place only when whole)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())     # the executor has no public kill
    ex.shutdown(wait=False, cancel_futures=True)
    for pr in procs:
        try:
            pr.kill()
        except (OSError, AttributeError):
            pass
    for pr in procs:
        try:
            pr.join(5)
        except (OSError, AttributeError, AssertionError):
            pass


def run_sweep(spec_path: str, out: str, workers: int = 1, scheduler: str | None = None,
              retry_failed: bool = False, progress: bool = False, chunk_size: int = 10, reuse: bool = True,
              force: bool = False, catalog_files: tuple[str, ...] = ()) -> dict:
    """Run (or resume) a sweep; see the module docstring for what survives what."""
    from fleetopt.catalog import load_catalog
    from fleetopt.files import FolderLock, clean_stale, os_error, write_atomic
    from fleetopt.procs import stop_on_signals

    spec, spec_dir = load_spec(spec_path)
    cases = expand(spec, spec_dir, load_catalog(tuple(catalog_files)), str(spec_path))
    out_p = Path(out)
    if out_p.exists() and not out_p.is_dir():
        raise FleetoptError(f"--out: '{out}' exists and is not a folder")
    if out_p.is_dir():
        other = _owner_problem(out_p, spec, spec_path)
        if other and not force:
            raise FleetoptError(f"--out: '{out}' holds {other}; give another folder, or --force to replace them "
                                f"with this spec's")
    try:
        out_p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, "--out", out_p) from None
    schema = row_schema(cases[0]["axis_types"] if cases else {})
    with FolderLock(out_p, "--out"):
        manifest = _manifest(spec, spec_path, cases, schema)
        try:
            current = (out_p / MANIFEST).read_text()
        except (OSError, UnicodeDecodeError):
            current = None
        cdir = out_p / "cases"
        ids = {c["case_id"] for c in cases}
        stale = [q for q in cdir.glob("*.parquet") if q.stem not in ids] if cdir.is_dir() else []
        try:
            for q in stale:                     # cases no longer in the spec, or whose instance changed
                q.unlink()
            if current != manifest:             # rows of another fleetopt or spec: to the declared schema,
                if cdir.is_dir():               # then the manifest (written only when it changes, so a
                    conform_rows(cdir, schema)  # finished sweep resumes read-only)
                write_atomic(out_p / MANIFEST, manifest)
        except OSError as e:
            raise os_error(e, "--out", out_p) from None
        if cdir.is_dir():
            clean_stale(cdir)
        return _run(spec, cases, out_p, workers, scheduler, retry_failed, progress, chunk_size, reuse,
                    tuple(catalog_files), len(stale), stop_on_signals)


def _run(spec, cases, out_p: Path, workers, scheduler, retry_failed, progress, chunk_size, reuse, catalog_files,
         removed: int, stop_on_signals) -> dict:
    skip = finished(out_p, retry_failed)
    todo = [c for c in cases if c["case_id"] not in skip]
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="case", desc=spec.name, dynamic_ncols=True, delay=2.0)   # on stderr
    results: list[dict] = []

    def took(rows):
        results.extend(rows)
        if bar is not None:
            bar.update(len(rows))

    def interrupted(signum: int):
        raise Interrupted()

    parts = chunks(todo, chunk_size)
    try:
        with stop_on_signals(interrupted):
            if not parts:
                pass
            elif scheduler:
                _run_dask(scheduler, parts, out_p, reuse, catalog_files, took)
            elif workers <= 1:
                for p in parts:
                    took(run_chunk(p, str(out_p), reuse, catalog_files))
            else:
                from concurrent.futures import ProcessPoolExecutor, as_completed

                ex = ProcessPoolExecutor(max_workers=min(workers, len(parts)), initializer=_worker_init,
                                         initargs=(os.getpid(),))
                try:
                    futs = [ex.submit(run_chunk, p, str(out_p), reuse, catalog_files) for p in parts]
                    for fut in as_completed(futs):
                        took(fut.result())
                except BaseException:
                    _stop_local(ex)
                    raise
                ex.shutdown(wait=True)
    except Interrupted:                             # the workers are stopped: count what they wrote
        ids = {c["case_id"] for c in cases}
        have = sum(q.stem in ids for q in (out_p / "cases").glob("*.parquet"))
        raise Interrupted(f"sweep '{spec.name}': {have} of {len(cases)} cases have rows in {out_p / 'cases'}; "
                          f"run the same command again to resume") from None
    except OSError as e:                            # a row could not be written (full or read-only disk)
        from fleetopt.files import os_error

        raise os_error(e, "--out", out_p / "cases") from None
    finally:
        if bar is not None:
            bar.close()
    secs = time.perf_counter() - t0
    failed = [r for r in results if r["status"] == "failed"]
    return {"spec": spec.name, "out": str(out_p), "cases": len(cases), "skipped": len(cases) - len(todo),
            "done": len(results), "failed": len(failed), "infeasible": sum(r["status"] == "infeasible" for r in results),
            "removed_stale": removed,
            "seconds": secs, "cases_per_second": len(results) / secs if secs > 0 and results else None,
            "errors": [f"{r['case_id']}: {r['error']}" for r in failed[:10]]}


# ---- Dask: workers share nothing with the client but the network ---------------------------

def portable(chunk: list[dict]) -> tuple[list[dict], dict[str, bytes]]:
    """A chunk a worker on another machine can solve: each case lists the files its
    instance reads as (component, content hash, file name), and the contents travel once
    per chunk (hash -> bytes)."""
    blobs: dict[str, bytes] = {}
    out = []
    for c in chunk:
        refs = []
        for name, path in input_files(c["inst"], Path(c["base"])):
            try:
                data = path.read_bytes()
            except OSError as e:
                raise FleetoptError(f"sweep: cannot read '{path}' to send it to the workers ({e.strerror})") from None
            digest = hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            refs.append((name, digest, path.name))
        out.append({**c, "input_files": refs})
    return out, blobs


def _localise(case: dict, blobs: dict[str, bytes], root: Path) -> dict:
    """On a worker: the case's input files written under ``root`` (by content hash, once
    per worker) and its instance pointed at them."""
    from fleetopt.files import write_atomic
    from fleetopt.schema import replace

    inst = case["inst"]
    for name, digest, fname in case.get("input_files") or ():
        path = root / digest / fname
        if not path.is_file():
            write_atomic(path, blobs[digest])
        dist = inst.workload.distribution
        if name is None:
            dist = replace(dist, path=str(path))
        else:
            comp = dist.components[name]
            comps = {**dist.components, name: replace(comp, workload=replace(comp.workload, path=str(path)))}
            dist = replace(dist, components=comps)
        inst = replace(inst, workload=replace(inst.workload, distribution=dist))
    return {**case, "inst": inst}


def solve_chunk(cases: list[dict], blobs: dict[str, bytes], reuse: bool, catalog: Any,
                calibration: tuple[Any, str, str]) -> list[dict]:
    """A Dask worker's chunk: the rows are returned to the client, which writes them;
    nothing is read from or written to the client's folders.  ``catalog``: the client's
    loaded catalog; ``calibration``: its (Calibration, label, source) in use."""
    import tempfile

    from fleetopt.physics.calibration import use_calibration

    use_calibration(*calibration)
    root = Path(tempfile.gettempdir()) / "fleetopt-sweep-inputs"
    return [solve_case(_localise(c, blobs, root), reuse, catalog=catalog) for c in cases]


def _run_dask(scheduler: str, parts, out_p: Path, reuse: bool, catalog_files, took) -> None:
    """The chunks on a Dask cluster: each worker gets its cases, the files they read, the
    catalog and the calibration, and returns rows; the client writes each row atomically as
    its chunk completes (a chunk Dask runs twice after a worker died is written once per
    completion, to the same name: still one row per case)."""
    from dask.distributed import Client, as_completed

    from fleetopt.catalog import load_catalog
    from fleetopt.physics.calibration import active_calibration, active_label, active_source

    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise FleetoptError(f"--scheduler: cannot reach '{scheduler}' ({str(e).splitlines()[0]})") from None
    cat = load_catalog(tuple(catalog_files))
    cal = (active_calibration(), active_label(), active_source())
    schema = row_schema(parts[0][0]["axis_types"])
    with client:
        futs = []
        for p in parts:
            cases, blobs = portable(p)
            futs.append(client.submit(solve_chunk, cases, blobs, reuse, cat, cal, pure=False))
        try:
            for fut in as_completed(futs):
                rows = fut.result()
                for row in rows:
                    _write_row(out_p, row, schema)
                took([_brief(r) for r in rows])
        except BaseException:
            client.cancel(futs)
            raise
