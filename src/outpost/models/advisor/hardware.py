"""What the advisor knows about a machine: CPU, RAM, NVIDIA GPUs (through NVML), and their memory bandwidths.

Probing is cheap and never raises: a machine it cannot read is described with conservative defaults. Cores
come from :mod:`outpost.cpus` (the affinity mask and cgroup quota, not the host's count), RAM from psutil
(available = what can be had without swapping, reclaimable cache included), capped by a cgroup memory limit,
which is what runs out first in a container. The CPU memory bandwidth cannot be measured cheaply, so it is an
estimate (overridable); GPU bandwidths come from a table of published specifications.
"""

from __future__ import annotations

import contextlib
import copy
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from outpost.cpus import physical_cores, usable_cpus
from outpost.errors import ConfigError
from outpost.models.advisor.units import GIB, gb

__all__ = [
    "APPLE_BANDWIDTH_GBS",
    "DEFAULT_CPU_BANDWIDTH_GBS",
    "DEFAULT_GPU_BANDWIDTH_GBS",
    "GPU",
    "GPU_BANDWIDTH_GBS",
    "PROFILES",
    "Hardware",
    "detect_gpus",
    "detect_hardware",
    "gpu_bandwidth_gbs",
]

#: Desktop/laptop DDR4 dual channel: DDR4-2666…3200 is 42.7…51.2 GB/s in theory; ~40 GB/s is a fair default.
#: It is an *estimate* (measuring needs a benchmark); pass ``memory_bandwidth_gbs`` to override it.
DEFAULT_CPU_BANDWIDTH_GBS = 40.0
#: An unknown NVIDIA card: a conservative figure (mid-range GDDR6 cards are 250…450 GB/s).
DEFAULT_GPU_BANDWIDTH_GBS = 300.0


#: Memory bandwidth of common NVIDIA cards in GB/s (vendor specifications). First match wins, so the more
#: specific patterns come first.
GPU_BANDWIDTH_GBS: tuple[tuple[str, float], ...] = (
    (r"H200", 4800.0),
    (r"H100.*PCIE", 2000.0),
    (r"H100.*NVL", 3900.0),
    (r"H100", 3350.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (r"A100.*80\s*GB", 2039.0),
    (r"A100", 1555.0),
    (r"L40S", 864.0),
    (r"\bL40\b", 864.0),
    (r"\bL4\b", 300.0),
    (r"\bA10G?\b", 600.0),
    (r"\bT4\b", 320.0),
    (r"RTX\s*6000\s*ADA", 960.0),
    (r"RTX\s*A6000", 768.0),
    (r"4090", 1008.0),
    (r"4080", 717.0),
    (r"4070", 504.0),
    (r"3090", 936.0),
    (r"3080", 760.0),
    (r"3060", 360.0),
)

#: Apple Silicon unified memory bandwidth in GB/s (Apple's specifications; binned Max chips are lower).
APPLE_BANDWIDTH_GBS: tuple[tuple[str, float], ...] = (
    (r"M\d+\s+Ultra", 800.0),
    (r"M4\s+Max", 546.0),
    (r"M\d+\s+Max", 400.0),
    (r"M4\s+Pro", 273.0),
    (r"M3\s+Pro", 150.0),
    (r"M\d+\s+Pro", 200.0),
    (r"M4", 120.0),
    (r"M[23]", 100.0),
    (r"M1", 68.0),
)


# --- hardware ----------------------------------------------------------------------------------------------


@dataclass
class GPU:
    """One accelerator: how much memory it has, how much is free, and how fast it reads it."""

    name: str
    vram_total_bytes: int
    vram_free_bytes: int
    bandwidth_gbs: float


@dataclass
class Hardware:
    """What the advisor needs to know about a machine. ``memory_bandwidth_gbs`` (CPU RAM) is an estimate."""

    cpu_model: str
    physical_cores: int
    logical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    memory_bandwidth_gbs: float
    gpus: list[GPU] = field(default_factory=list)
    #: where the CPU bandwidth came from: "estimate" (a default), "table" (known chip), "given", "profile"
    bandwidth_source: str = "estimate"
    name: str = "this machine"

    @classmethod
    def profile(cls, name: str) -> Hardware:
        """A synthetic machine from :data:`PROFILES` (a copy: callers may change it)."""
        try:
            return copy.deepcopy(PROFILES[name])
        except KeyError:
            known = ", ".join(sorted(PROFILES))
            raise ConfigError(f"No hardware profile named {name!r}: use one of {known}") from None

    def describe(self) -> list[str]:
        """One line per component, bandwidths with where they came from."""
        lines = [
            f"CPU: {self.cpu_model}, {self.physical_cores} physical / {self.logical_cores} logical cores",
            f"RAM: {gb(self.ram_total_bytes)} total ({self.ram_total_bytes / GIB:.1f} GiB), "
            f"{gb(self.ram_available_bytes)} available, ~{self.memory_bandwidth_gbs:g} GB/s "
            f"({self.bandwidth_source})",
        ]
        if not self.gpus:
            lines.append("GPU: none usable (no NVIDIA GPU seen through NVML)")
        for gpu in self.gpus:
            lines.append(
                f"GPU: {gpu.name}, {gb(gpu.vram_total_bytes)} ({gpu.vram_total_bytes / GIB:.1f} GiB) VRAM, "
                f"{gb(gpu.vram_free_bytes)} free, {gpu.bandwidth_gbs:g} GB/s"
            )
        return lines


#: Synthetic machines for tests and ``outpost models fit --profile NAME``.
PROFILES: dict[str, Hardware] = {
    "laptop-8gb": Hardware(
        cpu_model="synthetic 4-core laptop CPU",
        physical_cores=4,
        logical_cores=8,
        ram_total_bytes=8 * GIB,
        ram_available_bytes=7 * GIB,
        memory_bandwidth_gbs=50.0,  # LPDDR4X/DDR5 laptop
        bandwidth_source="profile",
        name="laptop-8gb",
    ),
    "gpu-24gb": Hardware(
        cpu_model="synthetic 16-core desktop CPU",
        physical_cores=16,
        logical_cores=32,
        ram_total_bytes=64 * GIB,
        ram_available_bytes=60 * GIB,
        memory_bandwidth_gbs=60.0,  # DDR5 dual channel
        gpus=[GPU("NVIDIA GeForce RTX 4090", 24 * GIB, int(23.5 * GIB), 1008.0)],
        bandwidth_source="profile",
        name="gpu-24gb",
    ),
    "h100-80gb": Hardware(
        cpu_model="synthetic 32-core server CPU",
        physical_cores=32,
        logical_cores=64,
        ram_total_bytes=256 * GIB,
        ram_available_bytes=240 * GIB,
        memory_bandwidth_gbs=200.0,  # 8-channel DDR5, well short of its theoretical peak
        gpus=[GPU("NVIDIA H100 80GB HBM3", 80 * GIB, int(79.5 * GIB), 3350.0)],
        bandwidth_source="profile",
        name="h100-80gb",
    ),
}


def gpu_bandwidth_gbs(name: str) -> float:
    """Published memory bandwidth of a GPU by its name; a conservative default for unknown cards."""
    for pattern, gbs in GPU_BANDWIDTH_GBS:
        if re.search(pattern, name, re.IGNORECASE):
            return gbs
    return DEFAULT_GPU_BANDWIDTH_GBS


def _cpu_bandwidth(cpu_model: str) -> tuple[float, str]:
    """Apple Silicon bandwidths are published and fixed per chip; anything else gets the DDR4 default."""
    if "apple" in cpu_model.lower():
        for pattern, gbs in APPLE_BANDWIDTH_GBS:
            if re.search(pattern, cpu_model, re.IGNORECASE):
                return gbs, "table"
    return DEFAULT_CPU_BANDWIDTH_GBS, "estimate"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _sysctl(name: str) -> str:
    try:
        result = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
        return result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    """The CPU's marketing name (psutil does not give it): /proc/cpuinfo on Linux, sysctl on macOS."""
    system = platform.system()
    if system == "Darwin":
        return _sysctl("machdep.cpu.brand_string")
    if system == "Linux":
        for line in _read("/proc/cpuinfo").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("model name", "Model", "Hardware"):
                return value
    return ""


def _cgroup_memory() -> tuple[int, int] | None:
    """A container's memory limit and usage (cgroup v2, else v1); None when there is no limit."""
    for limit_file, used_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read(limit_file).strip()
        if limit.isdigit():
            used = _read(used_file).strip()
            return int(limit), int(used) if used.isdigit() else 0
    return None


def _memory() -> tuple[int, int]:
    """Total and available RAM. Available counts reclaimable cache (Linux's MemAvailable), which "free" does not;
    a container's memory limit is what actually runs out first, so it caps both."""
    import psutil

    vm = psutil.virtual_memory()
    total, available = int(vm.total), int(vm.available)
    cgroup = _cgroup_memory()
    if cgroup is not None and 0 < cgroup[0] < total:  # v1 writes "no limit" as a huge number
        limit, used = cgroup
        total, available = limit, min(available or limit, limit - used)
    return total, available


def detect_gpus() -> list[GPU]:
    """NVIDIA GPUs through NVML (the ``gpu`` extra's ``nvidia-ml-py``, imported as ``pynvml`` only here); none
    when it is missing or fails."""
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except Exception:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    gpus: list[GPU] = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GPU(name, int(memory.total), int(memory.free), gpu_bandwidth_gbs(name)))
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return gpus


def detect_hardware(memory_bandwidth_gbs: float | None = None) -> Hardware:
    """This machine, read cheaply and never raising: unknown values fall back to safe guesses.

    ``memory_bandwidth_gbs`` overrides the CPU RAM bandwidth, which is otherwise an estimate (Apple
    Silicon: the published figure; anything else: :data:`DEFAULT_CPU_BANDWIDTH_GBS`).
    """
    model, total, available = "", 0, 0
    try:
        model = _cpu_model()
        total, available = _memory()
    except Exception:  # detection is advice, never a failure
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    logical, physical = usable_cpus(), physical_cores()
    if not total:
        total = 8 * GIB  # nothing readable: assume a small machine rather than a large one
    if not available or available > total:
        available = total // 2
    if memory_bandwidth_gbs is not None:
        bandwidth, source = float(memory_bandwidth_gbs), "given"
    else:
        bandwidth, source = _cpu_bandwidth(model)
    try:
        gpus = detect_gpus()
    except Exception:
        gpus = []
    return Hardware(model, physical, logical, int(total), int(available), bandwidth, gpus, source)
