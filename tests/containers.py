"""What the container tests share: the engine (``$DOCKER``, default ``docker``, split like a shell
would, so ``podman --remote`` works) and the appliance image, built once per test session and
kept under ``IMAGE`` so the next run builds from the layer cache (conftest.py's fixtures)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
VERSION = (REPO / "VERSION").read_text().strip()
# STS_TEST_IMAGE: another tag, so runs from two checkouts on one engine do not retag each other's image.
IMAGE = os.environ.get("STS_TEST_IMAGE", "localhost/simple-time-service:test")
BUILD_TIMEOUT = 900.0  # seconds for a cold build (apt + pip downloads)
TIMINGS: dict[str, float] = {}


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def run(command: list[str], timeout: float = 120.0, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def engine_command() -> list[str]:
    command = shlex.split(os.environ.get("DOCKER", "docker"))
    if not command or shutil.which(command[0]) is None:
        unavailable(f"no container engine: {command[:1] or ['(empty DOCKER)']} not found; "
                    "set DOCKER to a docker-compatible engine (podman works)")
    probe = run([*command, "version"], timeout=60)
    if probe.returncode != 0:
        unavailable(f"container engine {shlex.join(command)} does not work:\n{probe.stdout}{probe.stderr}")
    return command


def image_id(engine: list[str], image: str) -> str | None:
    result = run([*engine, "image", "inspect", "--format", "{{.Id}}", image])
    return result.stdout.strip() or None if result.returncode == 0 else None


def build(engine: list[str], tag: str, context: Path, *args: str, what: str = "image build s") -> str:
    """Build ``context`` as ``tag`` (the previous image of that tag removed once replaced)."""
    previous = image_id(engine, tag)
    started = time.monotonic()
    # BUILDAH_FORMAT=docker: podman's default OCI format would drop HEALTHCHECK; docker ignores it.
    result = run([*engine, "build", *args, "-t", tag, str(context)],
                 timeout=BUILD_TIMEOUT, env={**os.environ, "BUILDAH_FORMAT": "docker"})
    if result.returncode != 0:
        pytest.fail(f"build of {tag} failed ({result.returncode}):\n{tail(result.stdout + result.stderr)}")
    TIMINGS[what] = time.monotonic() - started
    if previous and previous != image_id(engine, tag):  # the last run's image, now untagged
        run([*engine, "rmi", previous])
    return tag


def build_appliance(engine: list[str]) -> str:
    return build(engine, IMAGE, REPO, "--build-arg", f"VERSION={VERSION}")
