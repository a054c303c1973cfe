"""Reading user files: YAML mappings, with one-line errors naming the file and the line
(a key given twice in one mapping is an error, not a silent last-one-wins).

Writing lives in ``fleetopt.atomic`` (files and sets of files that survive a kill)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from fleetopt.errors import FleetoptError


@lru_cache(maxsize=1)
def _loader() -> Any:
    """libyaml's safe loader when PyYAML was built with it (10x faster), else the
    pure-Python one, refusing duplicate keys."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            """The mapping of ``node``; a key given twice raises with both lines."""
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node.start_mark)
                    except TypeError:               # an unhashable key: the base class says so
                        continue
                    if first is not key_node.start_mark:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark)
            return super().construct_mapping(node, deep)

    return Loader


def parse_yaml(text: str) -> Any:
    """YAML text -> data, safely, refusing a key given twice in one mapping.  Raises
    ``yaml.YAMLError``."""
    import yaml

    return yaml.load(text, Loader=_loader())


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
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
