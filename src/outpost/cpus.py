"""How many CPUs this process may really use: the one answer for thread counts and the hardware advisor.

``os.cpu_count()`` is the host's count. In a container or under ``taskset`` the process may run on fewer
CPUs (the affinity mask), and a cgroup CPU quota (``docker --cpus 2``, Kubernetes limits) caps how much CPU
time it gets whatever the mask says; sizing a thread pool by the host's count then oversubscribes the CPUs
it has, and llama.cpp decoding slows down sharply when its threads wait on each other. So the count is the
affinity mask (psutil, where the platform has one), capped by the quota rounded up.

    >>> Llama(model_path=..., n_threads=usable_cpus())
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_quota", "physical_cores", "usable_cpus"]

#: Where a cgroup's CPU quota is read inside a container (v2's one file, v1's two), relative to the mount.
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup allows (``1.5`` for a quota of 150 ms per 100 ms), None when unlimited.

    cgroup v2 writes ``"<quota> <period>"`` (or ``"max <period>"``) in ``cpu.max``; v1 splits them into
    ``cpu/cpu.cfs_quota_us`` (-1: unlimited) and ``cpu/cpu.cfs_period_us``. Unreadable files mean no quota.
    """
    quota, _, period = _read(root / "cpu.max").partition(" ")
    if not quota:
        quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    try:
        allowed, per = int(quota), int(period)
    except ValueError:  # "max", or nothing readable
        return None
    return allowed / per if allowed > 0 and per > 0 else None


def _affinity() -> int:
    """CPUs in this process's affinity mask; the logical count where the platform has no mask (macOS)."""
    import psutil  # imported here: most commands never ask (~20 ms)

    try:
        return len(psutil.Process().cpu_affinity() or [])
    except (AttributeError, psutil.Error, OSError):
        return psutil.cpu_count(logical=True) or os.cpu_count() or 1


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """Logical CPUs this process may use: its affinity mask, capped by a cgroup quota (rounded up), at least 1."""
    count = _affinity() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def physical_cores(root: Path = CGROUP_ROOT) -> int:
    """Physical cores, never more than :func:`usable_cpus` (hyper-threads share a core's execution units)."""
    import psutil

    usable = usable_cpus(root)
    return max(1, min(psutil.cpu_count(logical=False) or usable, usable))
