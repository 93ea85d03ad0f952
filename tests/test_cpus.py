"""The one CPU-count helper (``outpost/cpus.py``): the affinity mask, capped by a cgroup CPU quota.

The affinity part runs for real in child processes pinned with ``os.sched_setaffinity``; the quota part reads
cgroup files written under ``tmp_path`` in the kernel's own formats (a real quota needs a container runtime).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from outpost.cpus import cgroup_cpu_quota, physical_cores, usable_cpus

pinnable = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks on this platform")


def _in_child(cpus: set[int], code: str) -> str:
    """Run ``code`` in a Python process pinned to ``cpus`` and return what it prints."""
    script = f"import os; os.sched_setaffinity(0, {sorted(cpus)!r}); {code}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()


def _cgroup_v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text + "\n")
    return root


def _cgroup_v1(root: Path, quota: str, period: str) -> Path:
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pinnable
def test_this_process_counts_its_affinity_mask() -> None:
    mask = os.sched_getaffinity(0)
    assert usable_cpus(Path("/nonexistent-cgroup")) == len(mask)
    assert 1 <= physical_cores(Path("/nonexistent-cgroup")) <= len(mask)


@pinnable
def test_a_process_pinned_to_one_cpu_counts_one() -> None:
    one = {min(os.sched_getaffinity(0))}
    code = "from outpost.cpus import *; print(usable_cpus(), physical_cores(), os.cpu_count())"
    usable, physical, host = _in_child(one, code).split()
    assert (usable, physical) == ("1", "1")
    assert host == str(os.cpu_count())  # what the copies it replaced counted: the host's CPUs, pinned or not


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(_cgroup_v2(tmp_path / "a", "150000 100000")) == 1.5
    assert cgroup_cpu_quota(_cgroup_v2(tmp_path / "b", "max 100000")) is None
    assert cgroup_cpu_quota(_cgroup_v2(tmp_path / "c", "garbage")) is None
    assert cgroup_cpu_quota(tmp_path / "none") is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(_cgroup_v1(tmp_path / "a", "50000", "100000")) == 0.5
    assert cgroup_cpu_quota(_cgroup_v1(tmp_path / "b", "-1", "100000")) is None  # v1's "unlimited"


@pinnable
def test_a_quota_caps_the_mask_rounded_up_and_never_below_one(tmp_path: Path) -> None:
    mask = len(os.sched_getaffinity(0))
    assert usable_cpus(_cgroup_v2(tmp_path / "half", "50000 100000")) == 1  # half a CPU still needs a thread
    assert usable_cpus(_cgroup_v2(tmp_path / "many", f"{100000 * (mask + 8)} 100000")) == mask  # the mask wins
    if mask >= 2:
        assert usable_cpus(_cgroup_v2(tmp_path / "one-and-a-bit", "110000 100000")) == 2
        assert physical_cores(_cgroup_v2(tmp_path / "one", "100000 100000")) == 1
