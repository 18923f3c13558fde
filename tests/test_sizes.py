"""Classes and functions stay short enough to read at a glance: no class over 150 lines, no
function over 40, in the appliance and the dashboard (measured from the source, docstrings and
comments included)."""

from __future__ import annotations

import ast

import pytest
from procs import REPO

MAX_CLASS_LINES, MAX_FUNCTION_LINES = 150, 40


def definitions() -> list[tuple[str, int, int]]:
    """(where, kind's limit, lines) of every class and function."""
    found = []
    for module in sorted((REPO / "appliance").rglob("*.py")):  # the dashboard: test_dashboard_code.py
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            else:
                continue
            where = f"{module.relative_to(REPO)}:{node.lineno} {node.name}"
            found.append((where, limit, node.end_lineno - node.lineno + 1))
    return found


@pytest.mark.parametrize("kind", ["class", "function"])
def test_nothing_is_longer_than_its_limit(kind):
    limit = MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES
    too_long = [f"{where}: {lines} lines" for where, of, lines in definitions()
                if of == limit and lines > limit]
    assert too_long == []
