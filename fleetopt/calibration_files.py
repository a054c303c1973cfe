"""Calibration files: reading one and making it the calibration in use (CLI or instance).

A calibration file (written by ``fleetopt calibrate``) is YAML with a ``coefficients:``
mapping of ``Calibration`` names to numbers; names, types and ``BOUNDS`` are checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from fleetopt.errors import FleetoptError
from fleetopt.files import read_yaml_mapping
from fleetopt.physics.calibration import DEFAULT, Calibration, active_source, calibration_from_mapping, use_calibration


def load_calibration(path: str | os.PathLike[str], source: str = "cli") -> Calibration:
    """Read a calibration file and make it active (``source``: who asked, ``cli`` or
    ``instance``); one-line ``FleetoptError`` on any mistake."""
    data = read_yaml_mapping(path, "calibration file")
    try:
        cal = calibration_from_mapping(data, str(path))
    except ValueError as e:
        raise FleetoptError(str(e)) from None
    use_calibration(cal, str(path), source)
    return cal


def apply_instance_calibration(field: str | None, base: Path) -> None:
    """An instance's ``calibration`` field (relative to its folder) becomes active unless the
    command line chose one; an instance without the field restores the packaged one if an
    earlier instance had set it."""
    if active_source() == "cli":
        return
    if field:
        load_calibration(base / field, "instance")
    elif active_source() == "instance":
        use_calibration(DEFAULT, "packaged", "packaged")
