"""The one version string, from the top-level VERSION file (baked into package metadata)."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # appliance/core/version.py -> the checkout


def _read_version() -> str:
    # A source checkout (editable install, tests) reads VERSION itself so a bump shows at once;
    # an installed wheel only has its metadata, which setuptools took from the same file.
    version_file = _SOURCE_ROOT / "VERSION"
    if version_file.is_file():
        return version_file.read_text().strip()
    try:
        return metadata.version("simple-time-service")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def git_commit() -> str | None:
    """The commit of a source checkout, or None (installed package, no git)."""
    if not (_SOURCE_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(_SOURCE_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=2, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


__version__ = _read_version()
