"""What the tests of deploy/ share: the tools that read the files, and what no schema knows
(which variables are settings, how long a graceful stop of some programs may take)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

from appliance import supervise
from appliance.core.config import VARIABLES, Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
IN_CI = os.environ.get("CI", "").lower() == "true"
IMAGE_DATA_DIR = "/var/lib/simple-time-service"  # the image's DATA_DIR (Dockerfile)
IMAGE_USER = 10001  # the image's USER (Dockerfile)
KNOWN_VARIABLES = {name for name, _, _ in VARIABLES}


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        unavailable(f"{name} not found")
    return found


def run(command: list[str], env: Mapping[str, str] | None = None, timeout: float = 60):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})} if env is not None else None)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def unknown_variables(names: set[str], values: Mapping[str, str]) -> set[str]:
    """Names that are no setting. A name another value refers to as $(NAME) (Kubernetes expands
    those) only exists to compose that value, and counts as known."""
    referenced = {ref for value in values.values() for ref in re.findall(r"\$\((\w+)\)", value)}
    return names - KNOWN_VARIABLES - referenced


def worst_case_stop_s(env: Mapping[str, str]) -> int:
    """Seconds supervisord may take to stop every program of an appliance with this
    environment: it stops them one after the other, each within its stopwaitsecs."""
    settings = Settings.from_env(env)
    up_env, programs = supervise.up_environment(settings, {})
    parser = configparser.RawConfigParser()
    parser.read_string(supervise.supervisord_config(programs))
    total = 0
    for program in programs:
        raw = parser.get(f"program:{program}", "stopwaitsecs").split(";")[0].strip()
        total += int(re.sub(r"%\(ENV_(\w+)\)s", lambda m: up_env[m.group(1)], raw))
    return total


def duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", text))
