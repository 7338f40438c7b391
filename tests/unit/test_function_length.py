"""No product function grows to 80 lines: a long one is a sign of several jobs in one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("authcore", "tokenserver", "registry_proxy")
LIMIT = 80


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno
    ]


def test_every_product_function_is_under_80_lines() -> None:
    found = [
        item
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        for item in _functions(path)
    ]
    assert len(found) > 100  # the walk found the code
    too_long = [f"{where} ({lines} lines)" for where, lines in found if lines >= LIMIT]
    assert too_long == []
