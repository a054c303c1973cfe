"""The code's habits, checked: no import cycle (imports inside functions and the lazy
registries' ``module:attr`` targets counted), every lazy target importable, no module
over 400 lines, mypy and ruff clean as configured in pyproject.toml, a light start-up."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetopt import lazy

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fleetopt", "formulations")
TARGET = re.compile(r"(fleetopt|formulations)(\.\w+)*:\w+")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its own name)."""
    mods = {}
    for pkg in PACKAGES:
        for p in (REPO / pkg).rglob("*.py"):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(the package modules ``name`` imports anywhere in its text, at module level or in a
    function or under TYPE_CHECKING; the lazy ``module:attr`` targets it names)."""

    def known(dotted: str) -> str | None:
        while dotted and dotted not in mods:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    out: set[str] = set()
    targets: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            found = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.fullmatch(node.value):
            targets.add(node.value)
            found = [node.value.partition(":")[0]]
        for f in found:
            m = known(f)
            if m and m != name and f.split(".")[0] in PACKAGES:
                out.add(m)
    return out, targets


def _graph() -> tuple[dict[str, set[str]], set[str]]:
    mods = _modules()
    graph, targets = {}, set()
    for name, path in mods.items():
        graph[name], t = _imports(name, path, mods)
        targets |= t
    return graph, targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph, _ = _graph()
    assert len(graph) > 80
    assert _cycles(graph) == []


def test_the_checker_sees_a_cycle_through_a_function_and_a_lazy_target():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_lazy_target_imports():
    _, targets = _graph()
    assert len(targets) >= 15            # commands, modes, formulations, optional features
    for t in sorted(targets):
        assert lazy.load(t) is not None, t


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return exe


def test_ruff_as_configured():
    r = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_as_configured():
    r = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


HEAVY = ("pandas", "scipy", "pyomo", "optuna", "matplotlib", "dask", "pyarrow", "tqdm")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return set(out)


def test_import_fleetopt_is_light():
    """``import fleetopt`` loads the API lazily: not even numpy until it is used."""
    loaded = _loaded_after("import fleetopt")
    assert "numpy" not in loaded and not loaded & set(HEAVY)
    assert {"fleetopt.api", "fleetopt.solver", "fleetopt.problem"}.isdisjoint(loaded)


def test_what_solve_imports_stays_within_budget():
    """The command ``fleetopt solve`` imports (its module and the solver) without pandas,
    scipy, Pyomo, Optuna, matplotlib, Dask, Arrow or tqdm, the plan report's renderers or
    the simulator; and within the start-up budget (best of 5, generous for a shared
    machine: whole-process solve is ~0.3-0.5 s)."""
    code = "import fleetopt.cli, fleetopt.cli.plan, fleetopt.solver, formulations.fleet, highspy"
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert {"fleetopt.plan_report.write", "fleetopt.simulator.run", "fleetopt.disagg"}.isdisjoint(loaded)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
        best = min(best, time.perf_counter() - t0)
    assert best < 1.0, f"start-up imports took {best:.2f} s"
