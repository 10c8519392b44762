"""The package's rooms and their arrows, read from the code: no import cycles, and each room
imports only the rooms below it (docs/architecture.md draws the same picture)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pienteger_nb"
LEAVES = {"errors", "types", "config", "address", "recorder", "replay", "spend", "kernel", "throttle", "interpolate"}
# room -> the rooms it may import (besides itself and the leaves)
MAY_IMPORT = {
    "leaf": set(),
    "client": set(),
    "ledger": set(),
    "batch": {"client", "ledger"},
    "notebook": {"client", "ledger", "batch", "emulator"},
    "emulator": set(),
}
# room -> third-party or standard modules it must not import
FORBIDDEN = {
    "leaf": {"requests", "pandas", "IPython", "ipywidgets", "sqlite3", "psycopg"},
    "client": {"pandas", "IPython", "ipywidgets", "sqlite3", "psycopg", "numpy"},
    "ledger": {"requests", "IPython", "ipywidgets"},
    "batch": {"psycopg"},  # IPython.display only, for the progress bar
}


def _module_name(path: Path) -> str:
    parts = ["pienteger_nb", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """Every module this one imports, anywhere in it (functions and TYPE_CHECKING blocks too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found


GRAPH = {name: {m for m in _imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1] in LEAVES:
        return "leaf"
    return parts[1] if parts[1] in MAY_IMPORT else "top"  # cli, demo: on top, beside the notebook


def test_the_walk_sees_the_rooms():
    rooms = {_room(m) for m in MODULES}
    assert {"client", "ledger", "batch", "notebook", "emulator", "leaf"} <= rooms
    assert "pienteger_nb.client.stream" in GRAPH["pienteger_nb.client.client"]  # sanity: arrows are read


def test_no_import_cycles():
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) in MAY_IMPORT))
def test_each_room_imports_only_the_rooms_below_it(module: str):
    room = _room(module)
    allowed = {room, "leaf", *MAY_IMPORT[room]}
    wrong = sorted(m for m in GRAPH[module] if _room(m) not in allowed)
    assert wrong == [], f"{module} ({room}) may not import {wrong}"
    outside = {m.split(".")[0] for m in _imports(module, MODULES[module]) if not m.startswith("pienteger_nb")}
    assert outside & FORBIDDEN.get(room, set()) == set()
    if room == "emulator":  # the standard library only, so the tests cross-check the client
        assert outside <= set(sys.stdlib_module_names), outside - set(sys.stdlib_module_names)
