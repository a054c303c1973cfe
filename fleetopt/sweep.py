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

Each case has a stable ``case_id`` (a hash of the base and its overrides) and is written,
as it finishes, to ``OUT/cases/<case_id>.parquet`` by an atomic rename, so a sweep killed
at any moment (SIGKILL included) keeps every finished case and never holds half a row or
a duplicate; re-running the command skips the finished cases.  A case that fails is
recorded with its error and the sweep goes on (``--retry-failed`` runs those again).

Reuse: cases are grouped so that cases differing only in right-hand sides (power cap, GPU
inventories) run one after the other in the same worker, which keeps their sized columns;
workloads and catalogs are cached per worker.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from fleetopt import FleetoptError
from fleetopt.schema import Meta, Record, convert, field, int_between, to_builtins

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
    grid: dict[str, Annotated[list[Any], Meta(min_length=1)]] | None = None
    """Axis -> values; a value that is a mapping with exactly ``value`` and ``set`` is an
    ``AxisValue`` (it sets several fields under one label)."""
    cases: list[dict[str, Any]] | None = None
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
    return spec, Path(path).resolve().parent


def _fmt(v: Any) -> str:
    return json.dumps(v)


def expand(spec: SweepSpec, spec_dir: Path) -> list[dict]:
    """Every case: {case_id, instance (path), labels {axis: value}, overrides [k=v, ...]}."""
    cases = []
    if spec.instances is not None:
        folder = (spec_dir / spec.instances).resolve()
        files = sorted(folder.glob("*.yaml"))
        if not files:
            raise FleetoptError(f"instances: no .yaml files in '{folder}'")
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
    for c in cases:
        key = json.dumps([Path(c["instance"]).name, sorted(c["overrides"])])
        c["case_id"] = hashlib.sha1(key.encode()).hexdigest()[:16]
    ids = [c["case_id"] for c in cases]
    if len(set(ids)) != len(ids):
        raise FleetoptError("sweep: two cases are identical (same instance and overrides)")
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
_YAML: dict = {}        # instance path -> parsed mapping


def _remember(d: dict, key, value, size: int = 16):
    if len(d) >= size:
        d.pop(next(iter(d)))
    d[key] = value
    return value


def _load_case(case: dict):
    """The case's instance: the file parsed once per worker, overrides applied to a copy."""
    import copy

    from fleetopt.instance import apply_set, load_instance_data, validate_instance

    path = case["instance"]
    data = _YAML.get(path) or _remember(_YAML, path, load_instance_data(path))
    data = copy.deepcopy(data)
    for a in case["overrides"]:
        apply_set(data, a)
    return validate_instance(data, path), Path(path).resolve().parent


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


def run_case(case: dict, out_dir: str, reuse: bool = True) -> dict:
    """Solve one case and write its row atomically; returns the row.  ``reuse=False`` solves
    from scratch (the benchmark's baseline)."""
    from fleetopt.catalog import load_catalog
    from fleetopt.solve import finish_solve

    t0 = time.perf_counter()
    row: dict[str, Any] = {"case_id": case["case_id"], "instance": Path(case["instance"]).stem,
                           "overrides": json.dumps(case["overrides"])}
    for k, v in case["labels"].items():
        row[f"axis:{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    try:
        inst, base = _load_case(case)
        cat = load_catalog()
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
                    "gap": res["solver"]["gap"], "solver_seconds": res["solver"]["solve_seconds"]})
    except Exception as e:     # noqa: BLE001  (a failed case is a row, not a stopped sweep)
        from fleetopt import InfeasibleError, NoPlanInTimeError

        row.update({"status": ("infeasible" if isinstance(e, InfeasibleError) else
                               "no_plan_in_time" if isinstance(e, NoPlanInTimeError) else "failed"),
                    "error": f"{type(e).__name__}: {e}"})
    row["seconds"] = time.perf_counter() - t0
    _write_row(Path(out_dir), row)
    return row


def run_chunk(cases: list[dict], out_dir: str, reuse: bool = True) -> list[dict]:
    return [_brief(run_case(c, out_dir, reuse)) for c in cases]


def _brief(row: dict) -> dict:
    return {"case_id": row["case_id"], "status": row["status"], "error": row.get("error")}


STR_COLS = ("case_id", "instance", "overrides", "status", "error", "topology", "boundaries", "gpu_types",
            "homog_topology")
INT_COLS = ("pools", "instances_total", "gpus", "homog_gpus")


def _arrow_type(name: str, value):
    import pyarrow as pa

    if name in STR_COLS:
        return pa.string()
    if name in INT_COLS:
        return pa.int64()
    if isinstance(value, bool) or (name.startswith("axis:") and not isinstance(value, (int, float))):
        return pa.string()
    return pa.float64()


def _write_row(out: Path, row: dict) -> None:
    """One Parquet file per case, with a fixed schema (so every file of the dataset agrees
    whatever a case left empty), written to a hidden temporary name and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = out / "cases"
    d.mkdir(parents=True, exist_ok=True)
    for c in STR_COLS + INT_COLS + ("seconds",):
        row.setdefault(c, None)
    fields, cols = [], []
    for k, v in row.items():
        t = _arrow_type(k, v)
        if t == pa.string() and v is not None and not isinstance(v, str):
            v = json.dumps(v)
        fields.append(pa.field(k, t))
        cols.append(pa.array([v], type=t))
    tmp = d / f".{row['case_id']}.{os.getpid()}.tmp"
    pq.write_table(pa.Table.from_arrays(cols, schema=pa.schema(fields)), tmp)
    os.replace(tmp, d / f"{row['case_id']}.parquet")


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


def run_sweep(spec_path: str, out: str, workers: int = 1, scheduler: str | None = None,
              retry_failed: bool = False, progress: bool = False, chunk_size: int = 10, reuse: bool = True) -> dict:
    spec, spec_dir = load_spec(spec_path)
    cases = expand(spec, spec_dir)
    out_p = Path(out)
    if out_p.exists() and not out_p.is_dir():
        raise FleetoptError(f"--out: '{out}' exists and is not a folder")
    out_p.mkdir(parents=True, exist_ok=True)
    _write_manifest(out_p, spec, spec_path, cases)
    skip = finished(out_p, retry_failed)
    todo = [c for c in cases if c["case_id"] not in skip]
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="case", desc=spec.name, dynamic_ncols=True)
    results: list[dict] = []

    def took(rows):
        results.extend(rows)
        if bar is not None:
            bar.update(len(rows))

    parts = chunks(todo, chunk_size)
    if scheduler:
        from dask.distributed import Client, as_completed

        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as e:
            raise FleetoptError(f"--scheduler: cannot reach '{scheduler}' ({str(e).splitlines()[0]})") from None
        with client:
            futs = [client.submit(run_chunk, p, str(out_p.resolve()), reuse, pure=False) for p in parts]
            for fut in as_completed(futs):
                took(fut.result())
    elif workers <= 1:
        for p in parts:
            took(run_chunk(p, str(out_p), reuse))
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(run_chunk, p, str(out_p), reuse) for p in parts]
            for fut in as_completed(futs):
                took(fut.result())
    if bar is not None:
        bar.close()
    secs = time.perf_counter() - t0
    failed = [r for r in results if r["status"] == "failed"]
    return {"spec": spec.name, "out": str(out_p), "cases": len(cases), "skipped": len(cases) - len(todo),
            "done": len(results), "failed": len(failed), "infeasible": sum(r["status"] == "infeasible" for r in results),
            "seconds": secs, "cases_per_second": len(results) / secs if secs > 0 and results else None,
            "errors": [f"{r['case_id']}: {r['error']}" for r in failed[:10]]}


def _write_manifest(out: Path, spec: SweepSpec, spec_path: str, cases: list[dict]) -> None:
    from fleetopt.output import to_json, write_atomic

    write_atomic(out / "sweep.json", to_json({"spec": to_builtins(spec), "spec_path": str(Path(spec_path).resolve()),
                                              "cases": [{k: c[k] for k in ("case_id", "labels", "overrides")}
                                                        for c in cases]}) + "\n")
