"""The dashboard's code keeps its shape: it touches no private part of anything but itself,
its private names do not shadow Textual's, and its functions and classes stay small.

Read from the source (ast), so a breach is named with its file and line. Private parts of a
library (``obj._x``, ``super()._x``, ``from textual._x import``) change without notice in any
release; the dashboard uses public API only.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from procs import REPO

import dashboard

DASHBOARD = REPO / "dashboard"
MAX_FUNCTION_LINES = 40
MAX_CLASS_LINES = 150  # a class longer than this does more than one job


def modules() -> list[Path]:
    return sorted(DASHBOARD.rglob("*.py"))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_private_names(cls: ast.ClassDef) -> set[str]:
    """What a class defines itself: methods, class attributes, and ``self._x = ...``."""
    names = {node.name for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(cls):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                    and target.value.id == "self":
                names.add(target.attr)
    return {name for name in names if is_private(name)}


def classes() -> dict[str, tuple[Path, ast.ClassDef]]:
    found = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                found[node.name] = (path, node)
    return found


def private_accesses(path: Path, tree: ast.Module, ours: dict[str, set[str]]) -> list[str]:
    """Every ``x._name`` where x is not ``self`` of a class that defines ``_name``."""
    breaches = []

    def visit(node: ast.AST, own: set[str] | None) -> None:
        if isinstance(node, ast.ClassDef):
            bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
            own = set().union(ours.get(node.name, set()), *(ours.get(base, set()) for base in bases))
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            is_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not is_self or own is None or node.attr not in own:
                breaches.append(f"{where(path, node)} {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            parts = (node.module or "").split(".") + [alias.name for alias in node.names]
            if any(is_private(part) for part in parts):
                breaches.append(f"{where(path, node)} {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            visit(child, own)

    visit(tree, None)
    return breaches


def test_no_dashboard_module_touches_a_private_attribute_of_anything_but_itself():
    ours = {name: own_private_names(node) for name, (_, node) in classes().items()}
    breaches = [breach for path in modules()
                for breach in private_accesses(path, ast.parse(path.read_text()), ours)]
    assert not breaches, ("private parts of other objects touched (a Textual or Rich release may "
                          "change them without notice; use public API):\n" + "\n".join(breaches))


def dashboard_classes_on_textual() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(dashboard.__path__, "dashboard."):
        if info.name.endswith("__main__"):  # runs the dashboard when imported
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__ == info.name and any(
                    base.__module__.split(".")[0] == "textual" for base in value.__mro__):
                found.append(value)
    return found


def textual_private_names(cls: type) -> set[str]:
    """The private names Textual's classes under ``cls`` define or assign on ``self``."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base.__module__.split(".")[0] != "textual":
            continue
        names.update(name for name in vars(base) if is_private(name))
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        names.update(re.findall(r"self\.(_[A-Za-z]\w*)", source))
    return {name for name in names if is_private(name)}


def test_the_dashboards_private_names_do_not_shadow_those_of_its_textual_base_classes():
    ours, built_on_textual = classes(), dashboard_classes_on_textual()
    assert built_on_textual, "found no dashboard class built on Textual: the check is broken"
    clashes = []
    for cls in built_on_textual:
        path, node = ours[cls.__name__]
        for name in sorted(own_private_names(node) & textual_private_names(cls)):
            clashes.append(f"{path.relative_to(REPO)}: {cls.__name__}.{name}")
    assert not clashes, ("names Textual uses for its own state, overwritten by a dashboard class "
                         "(rename ours):\n" + "\n".join(clashes))


def test_no_dashboard_function_is_longer_than_40_lines_nor_any_class_longer_than_150():
    too_long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else \
                MAX_FUNCTION_LINES if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
            if limit is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{where(path, node)} {node.name}: "
                                f"{node.end_lineno - node.lineno + 1} lines (at most {limit})")
    assert not too_long, "split these by job:\n" + "\n".join(too_long)
