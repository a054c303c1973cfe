"""Reading user files: YAML mappings, with one-line errors naming the file and the line."""

from __future__ import annotations

from pathlib import Path

from fleetopt import FleetoptError


def parse_yaml(text: str):
    """YAML text -> data, safely: libyaml's safe loader when PyYAML was built with it (10x
    faster), else the pure-Python one.  Raises ``yaml.YAMLError``."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """``yaml.safe_load`` a file that must hold a mapping; ``what`` names it in errors
    (e.g. "instance file", "catalog file")."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise FleetoptError(f"{p}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetoptError(f"{p}: cannot read {what} ({exc.__class__.__name__})") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise FleetoptError(f"{p}:{where}: not valid YAML ({getattr(exc, 'problem', '') or 'syntax error'})") from None
    if not isinstance(data, dict):
        raise FleetoptError(f"{p}: a {what} must be a YAML mapping")
    return data
