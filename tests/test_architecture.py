"""The layout holds: the import contracts in pyproject.toml ([tool.importlinter]) are kept, and
breaking one is caught."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from procs import REPO, VENV_BIN


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "lint-imports"), "--no-cache"], cwd=tree,
                          capture_output=True, text=True, timeout=120)


def copy_of_the_tree(tmp_path: Path) -> Path:
    for name in ("appliance", "dashboard"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_import_contracts_are_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_program_importing_another_programs_package_breaks_the_layers(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "appliance" / "api" / "http" / "routes" / "status.py", "a") as module:
        module.write("\nfrom appliance.agent import probes  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "appliance.api is not allowed to import appliance.agent" in result.stdout


def test_the_http_application_importing_the_serving_loop_breaks_the_rooms(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "appliance" / "api" / "http" / "middleware.py", "a") as module:
        module.write("\nfrom appliance.api.serving import server  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "appliance.api.http is not allowed to import appliance.api.serving" in result.stdout


def test_serving_importing_the_workers_breaks_the_rooms(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "appliance" / "api" / "serving" / "guards.py", "a") as module:
        module.write("\nfrom appliance.api.workers import slot  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "appliance.api.serving is not allowed to import appliance.api.workers" in result.stdout


def test_core_importing_anything_above_it_breaks_the_layers(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "appliance" / "core" / "ids.py", "a") as module:
        module.write("\nfrom appliance.schema import events  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0 and "appliance.core is not allowed to import" in result.stdout


def test_the_dashboard_importing_the_appliance_breaks_its_contract(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "dashboard" / "format.py", "a") as module:
        module.write("\nfrom appliance.core import ids  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0 and "dashboard is not allowed to import appliance" in result.stdout
