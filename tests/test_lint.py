"""The code follows its lint rules ([tool.ruff] in pyproject.toml): errors, unused names and
import order, in the appliance, the dashboard, the tests and the benches."""

from __future__ import annotations

import subprocess

from procs import REPO, VENV_BIN


def test_ruff_finds_nothing():
    result = subprocess.run([str(VENV_BIN / "ruff"), "check", "--no-cache", "appliance", "dashboard",
                             "tests", "bench"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
