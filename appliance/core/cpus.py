"""How many CPUs this process may really use: its affinity, and its cgroup's CPU quota.

A container limited to 2 CPUs on a 64-core node sees 64 in ``os.cpu_count()``; the quota in
``cpu.max`` (cgroup v2) or ``cpu.cfs_quota_us`` (v1) is what it gets.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """At least 1; the smaller of the affinity mask and the cgroup's quota, rounded up."""
    count = len(os.sched_getaffinity(0))
    quota = cgroup_quota(cgroup)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_quota(cgroup: Path = CGROUP) -> float | None:
    """CPUs the cgroup may use (quota / period), None without a limit or a readable cgroup."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
