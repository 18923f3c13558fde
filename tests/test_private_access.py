"""No module reaches into a library's private parts, except the one adapter module per library,
whose own tests fail loudly when the library changes those parts.

Read from the source (the AST): an attribute whose name starts with one underscore, read from
anything but the module's own objects, or read from ``self``/``super()`` in a class where the
module itself never defines it (so it is a library base class's), is private access.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from procs import REPO

ADAPTERS = {  # the library each adapter stands for, and where its library test is
    "appliance/api/serving/waitress_adapter.py": "tests/test_waitress_adapter.py",
    "appliance/core/metrics_storage.py": "tests/test_metrics_storage.py",
}
# Names with an underscore that their libraries document as public: os._exit, peewee's
# Model._meta, confluent-kafka's local error codes, namedtuple's methods.
DOCUMENTED = {"_exit", "_meta", "_PARTITION_EOF", "_ALL_BROKERS_DOWN", "_FATAL", "_MSG_TIMED_OUT",
              "_replace", "_asdict", "_fields", "_make"}


def modules() -> list[Path]:
    found = list((REPO / "appliance").rglob("*.py"))  # the dashboard: test_dashboard_code.py
    return sorted(p for p in found if "__pycache__" not in p.parts)


def own_names(tree: ast.AST) -> set[str]:
    """Every name the module defines itself: functions, classes, assignments, self.x = ...
    (``self.x += 1`` reads x first: not a definition)."""
    names: set[str] = set()
    augmented = {id(node.target) for node in ast.walk(tree) if isinstance(node, ast.AugAssign)}
    for node in ast.walk(tree):
        if id(node) in augmented:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def is_own_object(node: ast.expr) -> bool:
    if isinstance(node, ast.Name) and node.id in ("self", "cls"):
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")


def private_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    own = own_names(tree)
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in DOCUMENTED):
            continue
        value = node.value
        if is_own_object(value) or (isinstance(value, ast.Name) and value.id in classes):
            if node.attr in own:
                continue
        found.append((node.lineno, node.col_offset, f"{path.relative_to(REPO)}:{node.lineno}: "
                                                    f"{ast.unparse(node)}"))
    return [text for *_, text in sorted(found)] + private_overrides(path)


def private_overrides(path: Path) -> list[str]:
    """Methods of the module's classes that override a library base class's private method."""
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if name.endswith(("__init__", "__main__")) or name.startswith("appliance._scan"):
        return []
    module = importlib.import_module(name)
    found = []
    for cls in vars(module).values():
        if not (inspect.isclass(cls) and cls.__module__ == name):
            continue
        libraries = [base for base in cls.__mro__[1:] if base is not object
                     and not base.__module__.startswith(("appliance", "dashboard"))]
        for attribute, value in vars(cls).items():
            if (inspect.isfunction(value) and attribute.startswith("_")
                    and not attribute.startswith("__")
                    and any(attribute in vars(base) for base in libraries)):
                found.append(f"{path.relative_to(REPO)}: {cls.__name__}.{attribute} overrides "
                             f"a library's private method")
    return found


@pytest.mark.parametrize("module", [p for p in modules()
                                    if str(p.relative_to(REPO)) not in ADAPTERS],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_outside_the_adapters_reads_a_library_s_private_attribute(module):
    assert private_reads(module) == []


def test_the_scan_sees_private_access_through_an_instance_and_through_a_subclass(tmp_path):
    sample = REPO / "appliance" / "_scan_sample.py"
    try:
        sample.write_text("class Table(Library):\n"
                          "    def grow(self):\n"
                          "        self._count += 1\n"
                          "        super()._update(1)\n"
                          "        self._mine = 2\n"
                          "        return self._mine\n\n"
                          "def peek(server):\n"
                          "    return server._map\n")
        assert [line.split(": ", 1)[1] for line in private_reads(sample)] == [
            "self._count", "super()._update", "server._map"]
    finally:
        sample.unlink()


def test_each_adapter_has_the_test_that_watches_its_library():
    for adapter, test in ADAPTERS.items():
        assert (REPO / adapter).is_file(), adapter
        assert (REPO / test).is_file(), f"{adapter} has no library test {test}"
