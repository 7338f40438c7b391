"""The layering the packages promise, read from their own imports.

authcore imports neither service; the registry imports nothing of the token
server (it trusts signatures, not the token server's code) and the token
server nothing of the registry; the token server's front ends (routes, app,
CLI) import nothing of its store; no module of ours takes part in an import
cycle, counting imports made only for type checking or inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("authcore", "tokenserver", "registry_proxy")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imported(path: Path) -> Iterator[str]:
    """Every module of ours that `path` imports, however and wherever it does."""
    modules = _modules()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                # `from pkg import mod` imports a module; `from mod import name` the module.
                candidate = f"{node.module}.{alias.name}"
                yield candidate if candidate in modules else node.module


@cache
def _graph() -> dict[str, frozenset[str]]:
    modules = _modules()
    return {
        name: frozenset(m for m in _imported(path) if m in modules and m != name)
        for name, path in modules.items()
    }


def _package(module: str) -> str:
    return module.split(".", 1)[0]


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("authcore", {"tokenserver", "registry_proxy"}),
        ("registry_proxy", {"tokenserver"}),
        ("tokenserver", {"registry_proxy"}),
    ],
)
def test_packages_import_only_what_they_may(importer: str, forbidden: set[str]) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if _package(module) == importer
        for target in targets
        if _package(target) in forbidden
    )
    assert not wrong
    # The rule is read from real imports: each service does use the core.
    assert (
        any(
            _package(t) == "authcore"
            for m, ts in _graph().items()
            if _package(m) == importer
            for t in ts
        )
        or importer == "authcore"
    )


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        # Front ends parse, call and format: the database is reached through
        # `tokenserver.services`, which alone wires the stores.
        ("tokenserver.routes", "tokenserver.store"),
        ("tokenserver.app", "tokenserver.store"),
        ("tokenserver.cli", "tokenserver.store"),
        # The store keeps plain values; what they mean is the layers' above it.
        ("tokenserver.store", "tokenserver.federation"),
    ],
)
def test_layers_import_only_what_they_may(importer: str, forbidden: str) -> None:
    graph = _graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _within(module, importer)
        for target in targets
        if _within(target, forbidden)
    )
    assert not wrong
    # The rule is read from real imports: both layers exist, and the lower one is imported.
    assert any(_within(module, importer) for module in graph)
    assert any(_within(target, forbidden) for targets in graph.values() for target in targets)


def test_the_credential_helper_imports_nothing_of_the_server() -> None:
    """It runs on people's machines: the package's version, and its own modules, only."""
    graph = _graph()
    helper = "tokenserver.credential_helper"
    imported = {
        target
        for module, targets in graph.items()
        if _within(module, helper)
        for target in targets
        if not _within(target, helper)
    }
    assert imported == {"tokenserver"}


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles
    assert len(graph) > 50 and sum(len(t) for t in graph.values()) > 100


def test_the_registry_loads_neither_the_token_server_nor_a_database() -> None:
    probe = (
        "import sys, registry_proxy.app, registry_proxy.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'tokenserver', 'sqlalchemy', 'alembic', 'ldap3', 'passlib'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert loaded == "[]"
    # The same probe does see them when the token server is imported: it can fail.
    probe_ts = probe.replace("registry_proxy.app, registry_proxy.cli", "tokenserver.app")
    loaded_ts = subprocess.run(
        [sys.executable, "-c", probe_ts], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert "'sqlalchemy'" in loaded_ts and "'tokenserver'" in loaded_ts
