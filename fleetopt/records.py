"""Typed, validated records read from YAML (instances, catalogs, sweep specs), on msgspec.

Choice named here: msgspec rather than pydantic, because every ``fleetopt`` command starts
a fresh process and validation sits on the start-up path: msgspec imports in milliseconds,
while pydantic's import and class building took a large share of the 0.7 s budget of
``fleetopt solve`` (the start-up rows of benchmarks/results/solve_scaling.md show what is
left).  Records are ``Struct`` classes with field constraints
(``Annotated[float, Meta(gt=0)]``), unknown fields forbidden, cross-field checks in
``__post_init__``.

``convert`` turns msgspec's error into the project's one line, ``path: what was wrong,
got <value>``, with the path written as ``--set`` takes it (``gpus.0.tp``), and refuses
infinite and NaN numbers anywhere in a record (msgspec's bounds let ``.inf`` through).
A cross-field check in ``__post_init__`` names a field below its record by starting its
message with ``@sub.path: `` (``@cells.3.4: must be >= 0, got -0.5``).
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar, Union

import msgspec
from msgspec import Meta, field  # noqa: F401  (re-exported for the record modules)

from fleetopt.errors import FleetoptError

R = TypeVar("R")


def replace(obj: Any, **changes: Any) -> Any:
    """A copy of a record with some fields changed (``msgspec.structs.replace``), keeping
    the attributes a record carries besides its fields (an instance's source)."""
    new = msgspec.structs.replace(obj, **changes)
    extra = getattr(obj, "__dict__", None)
    if extra:
        new.__dict__.update(extra)
    return new

to_builtins = msgspec.to_builtins

Pos = Annotated[float, Meta(gt=0)]
NonNeg = Annotated[float, Meta(ge=0)]
PosInt = Annotated[int, Meta(gt=0)]
NonNegInt = Annotated[int, Meta(ge=0)]
Fraction = Annotated[float, Meta(gt=0, lt=1)]


class Record(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every record: unknown fields are errors, fields are passed by name."""


class Frozen(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A hashable record (catalog entries: profiles cache on them)."""


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_BOUND = re.compile(r"^Expected `(?P<kind>\w+)` (?P<op>[<>]=?) (?P<val>[-+0-9.e]+)$")
_LEN = re.compile(r"^Expected `(?:array|object)` of length (?P<op>[<>]=?) (?P<val>\d+)$")
_TYPE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
          "array": "a list", "object": "a mapping", "null": "empty"}


def _parts(path: str) -> list[str]:
    """``$.a[0].b[...].c`` (msgspec) -> ["a", "0", "b", "...", "c"]."""
    return [p.replace("*", "...") for p in re.split(r"[.\[\]]", path.replace("[...]", ".*")) if p]


def _lookup(data: Any, parts: list[str]) -> tuple[bool, Any]:
    node = data
    for p in parts:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        else:
            return False, None
    return True, node


def _members(tp: Any) -> list[Any]:
    """The member types of ``tp``: Annotated unwrapped, Optional and Union flattened."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def _is_record(t: Any) -> bool:
    """Whether ``t`` is a record class (a msgspec Struct)."""
    return isinstance(t, type) and issubclass(t, msgspec.Struct)


def _child(tp: Any, key: str, node: Any) -> Any:
    """The declared type of ``tp[key]``; ``node`` (the data at tp) picks a tagged record."""
    for t in _members(tp):
        origin = typing.get_origin(t)
        if origin in (list, tuple) and key.isdigit():
            return typing.get_args(t)[0]
        if origin is dict:
            return typing.get_args(t)[1]
        if _is_record(t):
            cfg = t.__struct_config__
            if cfg.tag is not None and isinstance(node, dict) and node.get(cfg.tag_field) != cfg.tag:
                continue
            hints = typing.get_type_hints(t, include_extras=True)
            if key in hints:
                return hints[key]
    return None


def _kind(t: Any) -> str:
    """What a value of type ``t`` must be, in the words of the one-line messages."""
    if typing.get_origin(t) is Literal:
        return ", ".join(repr(a) for a in typing.get_args(t))
    t = typing.get_origin(t) or t
    name = {list: "array", tuple: "array", dict: "object"}.get(t, getattr(t, "__name__", str(t)))
    return _KINDS.get(name, name)


def _allowed(root: type, data: Any, parts: list[str]) -> str:
    """What the value at ``parts`` may be: a Literal's values, a tagged union's tags, and
    the other member kinds (``'auto' or a list``)."""
    tp, node = root, data
    for p in parts[:-1]:
        tp = _child(tp, p, node)
        node = _lookup(node, [p])[1]
        if tp is None:
            return ""
    last = parts[-1] if parts else ""
    tags = [repr(str(t.__struct_config__.tag)) for t in _members(tp)
            if _is_record(t) and t.__struct_config__.tag is not None and t.__struct_config__.tag_field == last]
    if tags:
        return "one of " + ", ".join(tags)
    leaf = _child(tp, last, node)
    if leaf is None:
        return ""
    members = _members(leaf)
    lits = [_kind(t) for t in members if typing.get_origin(t) is Literal]
    rest = [_kind(t) for t in members if typing.get_origin(t) is not Literal and t is not type(None)]
    return " or ".join(([f"one of {', '.join(lits)}"] if lits else []) + rest)


def _find_key(root: type, data: Any, parts: list[str]) -> list[str]:
    """msgspec writes a dict key as ``[...]``: find the key whose value fails, by validating
    the entries of that mapping one at a time against the mapping's value type."""
    k = parts.index("...")
    tp, node = root, data
    for p in parts[:k]:
        tp = _child(tp, p, node)
        node = _lookup(node, [p])[1]
        if tp is None or node is None:
            return parts
    vt = next((typing.get_args(t)[1] for t in _members(tp) if typing.get_origin(t) is dict), None)
    if vt is None or not isinstance(node, dict):
        return parts
    for key, val in node.items():
        try:
            msgspec.convert(val, vt, strict=False)
        except msgspec.ValidationError:
            return parts[:k] + [str(key)] + parts[k + 1:]
    return parts


def one_line(exc: msgspec.ValidationError, root: type, data: Any, prefix: str = "") -> str:
    """msgspec's message as ``prefix + path: what was wrong, got <value>``."""
    m = _AT.match(str(exc))
    assert m is not None, "the pattern matches every message"
    msg, raw = m.group("msg"), m.group("path") or ""
    parts = _parts(raw)
    if "..." in parts:
        parts = _find_key(root, data, parts)
    show_given = True
    if msg.startswith("@") and ": " in msg:          # a post-init check naming a field below its record
        sub, msg = msg[1:].split(": ", 1)
        parts += [p for p in sub.split(".") if p]
        show_given = False
    elif msg.startswith("Object contains unknown field"):
        parts.append(msg.split("`")[1])
        msg, show_given = "is not a known field", False
    elif msg.startswith("Object missing required field"):
        parts.append(msg.split("`")[1])
        msg, show_given = "is required", False
    elif (b := _BOUND.match(msg)):
        msg = f"must be {b.group('op')} {float(b.group('val')):g}"
    elif (b := _LEN.match(msg)):
        n = int(b.group("val"))
        msg = f"must have at least {n} item(s)" if b.group("op") == ">=" else f"must have {b.group('op')} {n} item(s)"
    elif (b := _TYPE.match(msg)):
        msg = "must be " + " or ".join(_KINDS.get(k.strip(), k.strip()) for k in b.group("want").split("|"))
    elif msg.startswith("Invalid enum value") or msg.startswith("Invalid value"):
        msg = f"must be {_allowed(root, data, parts) or 'an allowed value'}"
    given_known, given = _lookup(data, parts)
    if show_given and given_known and not isinstance(given, (dict, list)) and "got" not in msg:
        msg += f", got {given!r}"
    if not parts:                           # a check of the whole record
        return f"{prefix}{msg}" if prefix else f"(top level): {msg}"
    return f"{prefix}{'.'.join(parts)}: {msg}"


def non_finite(data: Any, path: tuple[str, ...] = ()) -> tuple[str, float] | None:
    """The first infinite or NaN number in plain data (mappings, lists, numbers) as
    (dotted path, value), or None."""
    if isinstance(data, float):
        return None if math.isfinite(data) else (".".join(path), data)
    items: Iterable[tuple[Any, Any]]
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    for k, v in items:
        if isinstance(v, (float, dict, list, tuple)):
            bad = non_finite(v, path + (str(k),))
            if bad is not None:
                return bad
    return None


def convert(data: Any, cls: type[R], source: str = "") -> R:
    """Validate plain data (from YAML) into ``cls``; a bad field raises ``FleetoptError``
    with one line naming it.  Lax where YAML is: "1e6" reads as a number.  Every number
    must be finite (``.inf`` and ``.nan`` are refused with their path)."""
    prefix = f"{source}: " if source else ""
    try:
        out = msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise FleetoptError(one_line(exc, cls, data, prefix)) from None
    bad = non_finite(to_builtins(out))
    if bad is not None:
        raise FleetoptError(f"{prefix}{bad[0] or '(top level)'}: must be a finite number, got {bad[1]}")
    return out
