"""A fleet: the instance's workload routed over pools, each pool sized, totals computed.

``evaluate(instance, topology)`` is the exact evaluation every other layer (MILP columns,
Optuna trials, baselines) agrees with.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetopt.errors import FleetoptError
from fleetopt.instance import Instance
from fleetopt.profiles import mode_of
from fleetopt.profiles.paper import cdf_at, paper_pool_traffic
from fleetopt.sizing import PoolSizing, Slo, size_pool
from fleetopt.traffic import PoolTraffic
from fleetopt.workload import LengthDist, from_cdf, from_cells, from_lognormal, read_trace, scale_output, trace_rate

GPUS_PER_NODE = 8


@dataclass(frozen=True)
class PoolChoice:
    """One pool of a topology: requests with routing key in (previous upper, upper].
    Several choices with the same upper form a *mixed* pool: each takes the fraction
    ``share`` of the range's requests, dispatched at random (so each sub-pool sees Poisson
    arrivals at share x the rate, with the range's length distribution), and is sized
    on its own."""

    upper: int
    gpu: str
    tp: int
    admission: str | None = None
    """None: the instance's (or the command's) admission policy."""
    serving: dict | None = field(default=None, compare=False)
    """Per-pool serving overrides (gpu_memory_utilization, max_num_seqs, chunk_tokens,
    power_cap_w) over the instance's ``serving``; set by ``fleetopt refine``."""
    share: float = 1.0
    """Fraction of the range's traffic (1 unless the pool is mixed)."""
    prefill_gpu: str | None = None
    """A split (disaggregated) pool: the prefill instances' GPU type; ``gpu``, ``tp``,
    ``admission`` and ``serving`` are then the decode instances' (``fleetopt.disagg``)."""
    prefill_tp: int | None = None
    prefill_serving: dict | None = field(default=None, compare=False)
    """Serving overrides of the prefill instances (e.g. their own power cap)."""

    def spec(self) -> str:
        """The pool as ``parse_topology`` reads it; a per-GPU power cap shows as ``:capW``
        (a split pool shows each phase's own)."""
        cap = lambda sv: f":cap{sv['power_cap_w']:.6g}" if (sv or {}).get("power_cap_w") else ""  # noqa: E731
        dec = f"{self.gpu}x{self.tp}" + (f":{self.admission}" if self.admission else "") + cap(self.serving)
        if self.prefill_gpu is not None:
            dec = f"pd({self.prefill_gpu}x{self.prefill_tp}{cap(self.prefill_serving)}/{dec})"
        return f"{self.upper}:{dec}" + (f"@{self.share:.6g}" if self.share != 1.0 else "")


def groups(topology: list[PoolChoice]) -> list[tuple[int, list[int]]]:
    """(upper, indices of its members) of each length range, ascending."""
    out: list[tuple[int, list[int]]] = []
    for k, p in enumerate(topology):
        if out and out[-1][0] == p.upper:
            out[-1][1].append(k)
        else:
            out.append((p.upper, [k]))
    return out


_SPLIT = re.compile(r"(\d+(?:\.\d+)?)([kK])?:pd\(([A-Za-z0-9_.\-]+?)(?:[xX](\d+))?(?::cap(\d+(?:\.\d+)?))?"
                    r"/([A-Za-z0-9_.\-]+?)(?:[xX](\d+))?(?::(reserve|paged))?(?::cap(\d+(?:\.\d+)?))?\)")


def parse_topology(spec: str) -> list[PoolChoice]:
    """``UPPER:GPU[xTP][:ADMISSION][:capW][@SHARE],...`` ascending, e.g. ``4096:h100x8,65536:h100x8:paged``
    (``:capW``: a per-GPU power cap in W);
    a mixed pool repeats its upper with shares summing to 1:
    ``4096:h100x8@0.25,4096:b200x4@0.75,65536:b200x8``; a split (disaggregated) pool is
    ``UPPER:pd(PREFILL_GPU[xTP][:capW]/DECODE_GPU[xTP][:ADMISSION][:capW])``, e.g.
    ``16384:pd(h100x8/h200x4)`` (``:capW`` a phase's per-GPU power cap in W)."""
    pools = []
    for i, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        sp = _SPLIT.fullmatch(part)
        if sp:
            caps = [{"power_cap_w": float(c)} if c else None for c in (sp.group(5), sp.group(9))]
            pools.append(PoolChoice(int(float(sp.group(1)) * (1024 if sp.group(2) else 1)), sp.group(6),
                                    int(sp.group(7) or 1), sp.group(8), caps[1], prefill_gpu=sp.group(3),
                                    prefill_tp=int(sp.group(4) or 1), prefill_serving=caps[0]))
            continue
        if ":pd(" in part:
            raise FleetoptError(f"topology pool {i + 1} '{part}': expected UPPER_TOKENS:pd(PREFILL_GPU[xTP][:capW]/"
                                f"DECODE_GPU[xTP][:reserve|paged][:capW]), e.g. 16384:pd(h100x8/h200x4:cap500)")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kK])?:([A-Za-z0-9_.\-]+?)(?:[xX](\d+))?(?::(reserve|paged))?"
                         r"(?::cap(\d+(?:\.\d+)?))?(?:@(\d*\.?\d+(?:[eE]-?\d+)?))?", part)
        if not m:
            raise FleetoptError(f"topology pool {i + 1} '{part}': expected UPPER_TOKENS:GPU[xTP][:reserve|paged][:capW]"
                                f"[@SHARE], e.g. 4096:h100x8")
        upper = int(float(m.group(1)) * (1024 if m.group(2) else 1))
        share = float(m.group(7)) if m.group(7) else 1.0
        if not 0 < share <= 1:
            raise FleetoptError(f"topology pool {i + 1} '{part}': share must be in (0, 1], got {share:g}")
        pools.append(PoolChoice(upper, m.group(3), int(m.group(4) or 1), m.group(5),
                                {"power_cap_w": float(m.group(6))} if m.group(6) else None, share=share))
    if not pools:
        raise FleetoptError("topology: no pools given")
    ups = [p.upper for p in pools]
    if any(b < a for a, b in zip(ups, ups[1:])) or ups[0] <= 0:
        raise FleetoptError(f"topology: pool upper bounds must be positive and ascending, got {ups}")
    for up, idx in groups(pools):
        if len(idx) > 1 and any(pools[k].prefill_gpu is not None for k in idx):
            raise FleetoptError(f"topology: the pool ending at {up} is split (pd) and cannot also be mixed")
        tot = sum(pools[k].share for k in idx)
        if abs(tot - 1.0) > 1e-6:
            raise FleetoptError(f"topology: the shares of the pool ending at {up} sum to {tot:g}, not 1 "
                                f"(a mixed pool repeats its upper with @SHARE on each member)")
    return pools


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def _existing(base: Path, p: str, field: str = "workload.distribution.path") -> Path:
    path = _resolve(base, p)
    if not path.is_file():
        raise FleetoptError(f"{field}: no such file '{path}'")
    return path


def _checked(problem, lines: list[int], field: str, name: str) -> None:
    """Raise a ``knots_problem``/``cells_problem`` found in a CSV, naming its line."""
    if problem is not None:
        i, _, msg = problem
        where = f" line {lines[i]}" if i is not None else ""
        raise FleetoptError(f"{field}: '{name}'{where}: {msg}")


def _component(d, base: Path, key: str, max_out, field: str = "workload.distribution"):
    """(LengthDist, trace rate or None) for one distribution spec (``field`` names it in
    errors; a CSV's bad row is named by its line)."""
    from fleetopt.instance import cells_problem, knots_problem
    from fleetopt.workload import read_numeric_csv

    if d.type == "cdf":
        if d.knots is not None:
            knots = d.knots
        else:
            path = _existing(base, d.path, f"{field}.path")
            lines, knots = read_numeric_csv(path, ["total_tokens_le", "cumulative_fraction"], f"{field}.path")
            _checked(knots_problem(knots), lines, f"{field}.path", path.name)
        return from_cdf(knots, d.input_share, routing_key=key), None
    if d.type == "histogram":
        if d.cells is not None:
            cells = d.cells
        else:
            path = _existing(base, d.path, f"{field}.path")
            cols = ["input_bin_lo", "input_bin_hi", "output_bin_lo", "output_bin_hi", "fraction"]
            lines, cells = read_numeric_csv(path, cols, f"{field}.path",
                                            ("dataset", d.dataset) if d.dataset is not None else None)
            if d.dataset is not None and not cells:
                raise FleetoptError(f"{field}.dataset: no rows for '{d.dataset}' in {path.name}")
            _checked(cells_problem(cells), lines, f"{field}.path", path.name)
        return from_cells(cells, d.points_per_dim, key, max_out), None
    if d.type == "trace":
        inp, out, t = read_trace(_resolve(base, d.path), d.input_column, d.output_column, d.time_column,
                                 f"{field}.path")
        rate = trace_rate(t) if t is not None else None
        return LengthDist.build(inp, out, np.ones_like(inp), key, max_out), rate
    if d.type == "lognormal":
        return from_lognormal(d.input_median, d.input_sigma, d.output_median, d.output_sigma, routing_key=key,
                              max_tokens=d.max_tokens, max_output_tokens=max_out), None
    raise FleetoptError(f"{field}.type: unknown '{d.type}'")


def model_context(inst: Instance, catalog) -> int:
    """The model's context window in tokens (0 when the catalog does not say)."""
    return int(getattr(catalog.model(inst.model), "max_context_tokens", 0) or 0)


def check_context(inst: Instance, dist: LengthDist, catalog, uppers=()) -> None:
    """Refuse (one line, exit 2) requests longer than the model's context window, and pools
    (``uppers``, a topology's upper bounds) whose window exceeds it: no server takes them."""
    ctx = model_context(inst, catalog)
    if not ctx:
        return
    tot = dist.inp + dist.out
    over = tot > ctx
    if over.any():
        raise FleetoptError(f"workload: {100 * float(dist.w[over].sum()):.3g} % of requests (up to {tot.max():.0f} "
                            f"tokens) are longer than {inst.model}'s context window of {ctx} tokens")
    for up in uppers:
        if up > ctx:
            raise FleetoptError(f"topology: the pool up to {up} tokens is longer than {inst.model}'s context window "
                                f"of {ctx} tokens")


def build_workload(inst: Instance, base: Path) -> tuple[LengthDist, float]:
    """The instance's length distribution and arrival rate (req/s)."""
    wl = inst.workload
    d = wl.distribution
    key, max_out = wl.routing_key, wl.max_output_tokens
    rate = None
    if d.type == "mixture":
        parts = [(c.weight, scale_output(_component(c.workload, base, key, max_out,
                                                    f"workload.distribution.components.{name}.workload")[0],
                                         c.output_scale, key, max_out))
                 for name, c in d.components.items() if c.weight > 0]
        tot = sum(wt for wt, _ in parts)
        if tot <= 0:
            raise FleetoptError("workload.distribution.components: every weight is 0")
        dist = LengthDist.build(np.concatenate([p.inp for _, p in parts]), np.concatenate([p.out for _, p in parts]),
                                np.concatenate([p.w * wt / tot for wt, p in parts]), "total" if key == "total" else key,
                                max_out)
    else:
        dist, rate = _component(d, base, key, max_out)
    dist = scale_output(dist, wl.output_scale, key, max_out)
    if wl.arrival_rate == "trace":
        if rate is None:
            raise FleetoptError("workload.arrival_rate: 'trace' needs a trace workload with a time column")
        return dist, rate
    return dist, float(wl.arrival_rate)


def pool_traffic(dist: LengthDist, lo: float, hi: float, next_hi: float | None,
                 compress=None) -> tuple[PoolTraffic, int]:
    """The traffic of the pool of routing keys (lo, hi] and its window.  ``next_hi`` is the
    next pool's upper bound (math.inf when the next pool is the last), None when this pool
    is the last: requests beyond ``hi`` are then clamped into it (lengths scaled to fit
    its window).  With ``compress``, a fraction ``success`` of the requests with key in
    (B, gamma x B] (B = hi, taken from the next pool) are served here compressed to fit,
    and this pool likewise gives up that fraction of its own keys in (lo, gamma x lo]."""
    last = next_hi is None
    s = dist.slice(lo, math.inf if last else hi)
    inp, out, w, key = dist.inp[s].copy(), dist.out[s].copy(), dist.w[s].copy(), dist.key[s]
    if last:
        inp, out = clamp_to_window(inp, out, hi)
    cred = out.copy()
    if compress is not None and compress.success > 0:
        if lo > 0:              # own requests that the pool below serves compressed
            gone = key <= compress.gamma * lo
            if compress.accounting == "consistent":
                gone &= out < lo
            w = np.where(gone, w * (1 - compress.success), w)
        if not last:            # the next pool's requests this pool serves compressed
            s2 = dist.slice(hi, next_hi)
            i, o, k2 = dist.inp[s2], dist.out[s2], dist.key[s2]
            sel = k2 <= compress.gamma * hi
            if compress.accounting == "consistent":
                sel &= o < hi
            if sel.any():
                i, o, w2 = i[sel], o[sel], dist.w[s2][sel] * compress.success
                if compress.accounting == "paper":   # served at length B, credited uncompressed
                    f = hi / (i + o)
                    ci, co, cr = i * f, o * f, o
                else:                                # prompt compressed to B - output; output served and credited
                    ci, co, cr = np.maximum(hi - o, 1.0), o, o
                inp, out = np.concatenate([inp, ci]), np.concatenate([out, co])
                w, cred = np.concatenate([w, w2]), np.concatenate([cred, cr])
    window = int(max(hi, float(np.max(inp + out)) if len(inp) else hi))
    return PoolTraffic(inp, out, w, cred), window


def clamp_to_window(inp: np.ndarray, out: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Requests longer than the window, scaled down to fit it (the last pool takes every
    longer request): both lengths by window / total, floored, at least 1 token."""
    tot = inp + out
    over = tot > window
    if not over.any():
        return inp, out
    f = np.where(over, window / tot, 1.0)
    return np.maximum(np.floor(inp * f), 1.0), np.maximum(np.floor(out * f), 1.0)


def route(dist: LengthDist, uppers: list[int], compress=None) -> list[tuple[PoolTraffic, int]]:
    """Split the distribution over pools by routing key; (traffic, window) per pool (see
    ``pool_traffic``)."""
    return [pool_traffic(dist, lo, hi, nx, compress) for lo, hi, nx in pool_bounds(uppers)]


def pool_bounds(uppers: list[int]) -> list[tuple[float, int, float | None]]:
    """(lo, hi, next_hi) of each pool of a topology, as ``pool_traffic`` takes them."""
    n = len(uppers)
    lows = [0] + uppers[:-1]
    nexts = [math.inf if k + 1 == n - 1 else (uppers[k + 1] if k + 1 < n else None) for k in range(n)]
    return list(zip(lows, uppers, nexts))


class Router:
    """The instance's routing, pool by pool: paper mode on a CDF workload keeps the
    published sub-CDF construction, everything else routes the distribution by key.
    ``pool(lo, hi, next_hi)`` gives one pool's (traffic, window); ``next_hi`` as in
    ``pool_traffic`` (None for the last pool)."""

    def __init__(self, inst: Instance, dist: LengthDist):
        d, comp = inst.workload.distribution, inst.pools.compress
        self.dist, self.compress = dist, comp
        self.paper = (mode_of(inst.mode).sub_cdf_routing and d.type == "cdf" and d.knots is not None
                      and (comp is None or comp.accounting == "paper")
                      and inst.workload.output_scale == 1.0)     # scaled outputs: routed by key
        if self.paper and comp is not None and comp.success < 1:
            raise FleetoptError(f"pools.compress.success: must be 1 with pools.compress.accounting: paper in paper mode "
                                f"(the published sizing compresses every request up to gamma x B), got "
                                f"{comp.success:g}; use accounting: consistent for a success rate")
        self.d = d

    def pool(self, lo: float, hi: float, next_hi: float | None) -> tuple[PoolTraffic, int]:
        if next_hi is None:
            self.warn_clamped(hi)
        if not self.paper:
            return pool_traffic(self.dist, lo, hi, next_hi, self.compress)
        g = self.compress.gamma if self.compress is not None else 1.0
        lo_split = int(g * lo) if lo > 0 else 0.0
        hi_split = math.inf if next_hi is None else int(g * hi)
        return paper_pool_traffic(self.d.knots, self.d.input_share, lo_split, hi_split, int(hi),
                                  self.d.samples, self.d.seed)

    def route(self, uppers: list[int]) -> list[tuple[PoolTraffic, int]]:
        return [self.pool(lo, hi, nx) for lo, hi, nx in pool_bounds(uppers)]

    def longer_than(self, window: float) -> tuple[float, float]:
        """(share of requests, longest routing key) beyond ``window``: what the last pool
        serves clamped to its window."""
        if self.paper:
            top = float(self.d.knots[-1][0])
            return (max(0.0, 1.0 - cdf_at(self.d.knots, window)) if top > window else 0.0), top
        k = self.dist.key
        return float(self.dist.w[k > window].sum()), float(k[-1])

    def warn_clamped(self, window: float) -> None:
        """Requests longer than the last pool's window are served clamped to it (the
        paper's convention): say so, once, with the share of traffic affected."""
        share, top = self.longer_than(window)
        if share > 0:
            import warnings

            from fleetopt.errors import FleetoptWarning

            warnings.warn(f"{100 * share:.3g} % of requests (up to {top:.0f} tokens) are longer than the last "
                          f"pool's window of {window:.0f} tokens and are served clamped to it; raise "
                          f"pools.max_window or the topology's last upper bound", FleetoptWarning, stacklevel=2)

    def route_members(self, topology: list[PoolChoice]) -> list[tuple[int, PoolTraffic, int]]:
        """Per topology entry: (lower bound, its range's traffic, window); the members of a
        mixed range share their range's (each takes its share of the rate)."""
        grp = groups(topology)
        lows = [0] + [up for up, _ in grp[:-1]]
        routed = self.route([up for up, _ in grp])
        return [(lo, t, w) for lo, (t, w), (_, idx) in zip(lows, routed, grp) for _ in idx]


def make_pool_profile(inst: Instance, gpu: str, tp: int, catalog=None, serving: dict | None = None):
    """The pool's profile under the instance's mode and serving settings (``serving``
    overrides them per pool; paper mode has no serving knobs)."""
    s = inst.serving
    kw = dict(gpu_memory_utilization=s.gpu_memory_utilization, max_num_seqs=s.max_num_seqs,
              chunk_tokens=s.chunk_tokens, power_cap_w=s.power_cap_w)
    kw.update(serving or {})
    return mode_of(inst.mode).profile(inst.model, gpu, tp, catalog, **kw)


def _price(inst: Instance, gpu_id: str, catalog) -> float | None:
    for g in inst.gpus:
        if catalog.gpu(g.id).id == gpu_id and g.usd_per_gpu_hour is not None:
            return g.usd_per_gpu_hour
    return None


def provisioned_w(basis: str, instances, it_power_w, peak_instance_power_w, gpus, tdp_w: float,
                  host_w_per_gpu: float, pue: float):
    """Facility power a pool is provisioned for, the quantity the facility cap bounds: IT
    power on the instance's basis (``expected``: at the mean batch; ``peak``: every instance
    at its slot-capped batch; ``tdp``: every GPU at nameplate plus its host share) x PUE.
    Scalars or arrays."""
    if basis == "expected":
        it = it_power_w
    elif basis == "peak":
        it = instances * peak_instance_power_w
    else:
        it = gpus * (tdp_w + host_w_per_gpu)
    return it * pue


def fleet_totals(pools: list[PoolSizing], rate: float, pue: float) -> dict:
    """Fleet figures from sized pools."""
    it_w = sum(p.it_power_w for p in pools)
    tok = sum(p.tokens_per_s for p in pools)
    gpu_w = sum(p.instances * p.power_per_gpu_w for p in pools)
    cost = sum(p.usd_per_hour for p in pools)
    return {"instances": sum(p.instances for p in pools), "gpus": sum(p.gpus for p in pools),
            "it_power_kw": it_w / 1e3, "facility_power_kw": it_w * pue / 1e3,
            "peak_it_power_kw": sum(p.instances * p.peak_instance_power_w for p in pools) / 1e3,
            "tokens_per_s": tok, "tokens_per_joule": tok / it_w if it_w else 0.0,
            "tokens_per_joule_facility": tok / (it_w * pue) if it_w else 0.0,
            "tok_per_w_paper": tok / gpu_w if gpu_w else 0.0,
            "energy_per_query_wh": it_w * pue / rate / 3600.0 if rate else 0.0,
            "cost_per_hour": cost, "cost_per_million_tokens": cost / (tok * 3600 / 1e6) if tok else 0.0,
            "arrival_rate": rate}


def evaluate(inst: Instance, base: Path, topology: list[PoolChoice], admission: str | None = None,
             catalog=None, workload: tuple[LengthDist, float] | None = None, sized=None) -> dict:
    """Size and score a given fleet (``fleetopt evaluate``).  ``sized(lo, upper, gpu, tp,
    admission, share)`` may return a pool already sized by this same code on the same
    traffic (``fleetopt solve`` passes its columns) as (PoolSizing, profile); None sizes it
    here.  Members of a mixed pool are sized at share x the range's rate."""
    from fleetopt.catalog import load_catalog

    cat = catalog or load_catalog()
    dist, rate = workload or build_workload(inst, base)
    check_context(inst, dist, cat, [p.upper for p in topology])
    mode = mode_of(inst.mode)
    adm = mode.admission_for(admission or inst.pools.admission[0])
    slo = Slo(inst.slo.ttft_p99_ms, inst.slo.tpot_p99_ms, inst.slo.max_utilization)
    host_per_gpu = inst.power.host_w_per_node / GPUS_PER_NODE
    pools, prov_w = [], 0.0
    pw = inst.power
    for choice, (lo, traffic, window) in zip(topology, Router(inst, dist).route_members(topology)):
        up = choice.upper
        if choice.prefill_gpu is not None:          # a split pool: two phases (fleetopt.disagg)
            from fleetopt.disagg import size_split_choice

            rows, profs = size_split_choice(inst, cat, choice, traffic, rate * choice.share, lo, window, slo,
                                            host_per_gpu, lambda g: _price(inst, g, cat))
            for p, prof in zip(rows, profs):
                pools.append(p)
                prov_w += provisioned_w(pw.provisioning, p.instances, p.it_power_w, p.peak_instance_power_w,
                                        p.gpus, prof.gpu.tdp_w, host_per_gpu, pw.pue)
            continue
        a = mode.admission_for(choice.admission or adm)
        got = (sized(lo, up, cat.gpu(choice.gpu).id, choice.tp, a, choice.share)
               if sized and not choice.serving else None)
        if got is not None:
            p, prof = got
        else:
            prof = make_pool_profile(inst, choice.gpu, choice.tp, cat, choice.serving)
            p = size_pool(prof, traffic, rate * choice.share, lo, up, window, slo, a, host_per_gpu,
                          _price(inst, prof.gpu.id, cat))
            p.split = choice.share
        pools.append(p)
        prov_w += provisioned_w(pw.provisioning, p.instances, p.it_power_w, p.peak_instance_power_w, p.gpus,
                                prof.gpu.tdp_w, host_per_gpu, pw.pue)
    fleet = fleet_totals(pools, rate, pw.pue)
    fleet["provisioned_facility_kw"] = prov_w / 1e3
    if pw.facility_cap_mw is not None:           # checked on the provisioning basis, as the MILP's row
        fleet["facility_cap_mw"] = pw.facility_cap_mw
        fleet["within_power_cap"] = prov_w <= pw.facility_cap_mw * 1e6 * (1 + 1e-12)
    rows = [p.as_dict() for p in pools]
    if any(c.prefill_gpu is not None for c in topology):
        from fleetopt.disagg import pool_rows

        rows = pool_rows(pools)
    return {"instance": inst.name, "mode": inst.mode, "model": inst.model, "admission": adm,
            "pools": rows, "fleet": fleet}
