"""``fleetopt calibrate``: fit the physical model to a user's own measurements, and calibration files.

A calibration file is YAML::

    fleetopt_calibration: 1
    fitted_on: measurements.csv (120 rows)
    coefficients: {eta_bw: 0.9, ..., seq_us: 12.0}

Every command reads one with ``--calibration FILE`` (or ``$FLEETOPT_CALIBRATION``);
``load_calibration`` checks it (known names, numbers, ``BOUNDS``) and makes it the
calibration of every profile built afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetopt.atomic import write_atomic
from fleetopt.catalog import Catalog
from fleetopt.errors import FleetoptError
from fleetopt.fit import FitResult, cross_validate, fit, gpu_family, summarize
from fleetopt.measurements import METRICS, predict, validate
from fleetopt.physics.calibration import Calibration, active_calibration

if TYPE_CHECKING:
    from pandas import DataFrame

#: Fewer rows than this cannot pin the coefficients the data identify.
MIN_ROWS = 8


def calibration_yaml(cal: Calibration, fitted_on: str) -> str:
    """The calibration file's text (coefficients in ``Calibration.names()`` order)."""
    lines = ["fleetopt_calibration: 1", f"fitted_on: {fitted_on!r}", "coefficients:"]
    lines += [f"  {k}: {v:.6g}" for k, v in cal.to_dict().items()]
    return "\n".join(lines) + "\n"


@dataclass
class CalibrateReport:
    """What ``calibrate`` found: residuals before and after, and cross-validation by GPU."""

    result: FitResult
    before: dict[str, float]
    after: dict[str, float]
    logo: list[dict]
    rows: int

    def rows_table(self) -> list[dict[str, Any]]:
        """One row per metric: MAPE before (the calibration in use) and after the fit."""
        out = []
        for m in METRICS:
            if m in self.after:
                row = {"metric": m, "rows": self.after[f"{m}_n"], "mape_before_pct": self.before.get(m, float("nan")),
                       "mape_after_pct": self.after[m]}
                out.append(row)
        return out


def read_measurements(path: str | os.PathLike[str], catalog: Catalog) -> DataFrame:
    """Read and validate a measurement CSV (schema in ``fleetopt.measurements``)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FleetoptError(f"{p}: no such measurements file")
    try:
        df = pd.read_csv(p, comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise FleetoptError(f"{p}: not a readable CSV ({str(e).splitlines()[0]})") from None
    df = validate(df, catalog)
    if len(df) < MIN_ROWS:
        raise FleetoptError(f"{p}: {len(df)} rows are too few to fit (at least {MIN_ROWS})")
    return df


def calibrate(df: DataFrame, catalog: Catalog, start: Calibration | None = None, max_nfev: int = 100,
              cross_validate_gpus: bool = True) -> CalibrateReport:
    """Fit ``df`` starting from ``start`` (default: the active calibration); residuals before
    and after, and leave-one-GPU-out when the table holds several GPU chips."""
    start = start or active_calibration()
    before = summarize(df, predict(df, start, catalog, {}, {t: 500.0 for t in set(df.task)}))
    res = fit(df, catalog, start, max_nfev=max_nfev)
    after = summarize(df, predict(df, res.cal, catalog, res.engines, res.prompt_by_task))
    chips = set(df.gpu.map(gpu_family))
    logo = cross_validate(df, catalog, "gpu", res, start, max_nfev) if cross_validate_gpus and len(chips) > 1 else []
    return CalibrateReport(res, before, after, logo, len(df))


def write_calibration(cal: Calibration, path: str | os.PathLike[str], fitted_on: str, force: bool = False) -> None:
    """Write a calibration file atomically; an existing file is replaced only with ``force``."""
    p = Path(path)
    if p.exists() and not force:
        raise FleetoptError(f"{p}: exists (use --force to replace it)")
    try:
        write_atomic(p, calibration_yaml(cal, fitted_on))
    except OSError as e:
        raise FleetoptError(f"{p}: cannot write ({e.strerror or e.__class__.__name__})") from None
