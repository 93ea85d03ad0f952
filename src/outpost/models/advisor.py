"""Hardware advisor for local GGUF models: which model, quant and context fit this machine, how fast, and why.

Everything here is arithmetic a reader can check, and every result can print it (``explain()``):

* **Weights** take ``params × bits_per_weight / 8`` bytes (or the exact GGUF size when the file is known).
* **KV cache** takes ``2 (K and V) × n_layers × n_ctx × n_head_kv × head_dim × bytes_per_element``.
* **Compute buffers** (llama.cpp's scratch plus runtime) are an estimate: 5% of the weights, clamped to
  300 MB…1.5 GB, plus the attention score matrix ``n_ctx × n_ubatch × n_head × 4`` bytes.
* **Decode speed** is memory-bound: every generated token reads all (active) weights plus the KV cache
  written so far, so ``tokens/s ≈ efficiency × bandwidth / bytes_per_token``; with partial offload the
  GPU part and the CPU part are read one after the other, so their times add.

Placement follows llama.cpp: whole layers (weights and their KV cache) go to the GPU with ``-ngl``; the
rest stays in RAM. The advisor prefers all-GPU, then partial offload, then CPU only, and then grows the
context while that costs (almost) no speed.

The CPU memory bandwidth cannot be measured cheaply, so it is an estimate (overridable); GPU bandwidths
come from a table of published specifications. Nothing here raises on detection: a machine it cannot
read is described with conservative defaults.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import math
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from outpost.errors import ConfigError, LoadError, ModelNotFoundError

__all__ = [
    "CPU_EFFICIENCY",
    "DEFAULT_CPU_BANDWIDTH_GBS",
    "DEFAULT_GPU_BANDWIDTH_GBS",
    "GPU",
    "GPU_EFFICIENCY",
    "PROFILES",
    "QUANT_BITS",
    "QUANT_LADDER",
    "USEFUL_CTX",
    "USEFUL_TOKENS_PER_S",
    "Hardware",
    "MemoryEstimate",
    "ModelSpec",
    "Plan",
    "SpeedEstimate",
    "bits_per_weight",
    "candidate_quants",
    "compute_overhead_bytes",
    "detect_hardware",
    "estimate_memory",
    "estimate_speed",
    "gpu_bandwidth_gbs",
    "kv_cache_bytes",
    "plan",
    "ram_budget_bytes",
    "recommend",
    "spec_from_size",
    "vram_budget_bytes",
    "weights_bytes",
]

GB = 1e9  # sizes are printed in decimal GB, like GGUF file sizes on model hubs
GIB = 1 << 30  # RAM modules and GPU memory are sold in GiB ("24 GB" RTX 4090 = 24 GiB)

Where = Literal["gpu", "partial", "cpu", "none"]

# --- constants (each is an estimate; the docstrings say where it comes from) ---------------------------------

#: Desktop/laptop DDR4 dual channel: DDR4-2666…3200 is 42.7…51.2 GB/s in theory; ~40 GB/s is a fair default.
#: It is an *estimate* (measuring needs a benchmark); pass ``memory_bandwidth_gbs`` to override it.
DEFAULT_CPU_BANDWIDTH_GBS = 40.0
#: An unknown NVIDIA card: a conservative figure (mid-range GDDR6 cards are 250…450 GB/s).
DEFAULT_GPU_BANDWIDTH_GBS = 300.0
#: Fraction of the memory bandwidth llama.cpp decoding reaches in practice (CPU: ~55-65%, GPU: ~65-80%).
CPU_EFFICIENCY = 0.6
GPU_EFFICIENCY = 0.7
#: VRAM kept free (fragmentation, CUDA context growth, the display).
VRAM_HEADROOM = 0.10
#: RAM kept free for the OS and other programs: 15% of the total or 1.5 GB, whichever is larger.
RAM_HEADROOM_FRACTION = 0.15
RAM_HEADROOM_MIN_BYTES = int(1.5e9)
#: llama.cpp compute buffers + runtime: 5% of the weights, clamped, plus the n_ctx-proportional KQ scratch.
OVERHEAD_FRACTION = 0.05
OVERHEAD_MIN_BYTES = int(300e6)
OVERHEAD_MAX_BYTES = int(1.5e9)
#: llama.cpp's default physical batch (n_ubatch): the attention scores are n_ctx × n_ubatch × n_head floats.
N_UBATCH = 512
#: Contexts the planner tries: powers of two from MIN_CTX up to the trained context.
MIN_CTX = 2048
#: A RAG prompt (question + a few retrieved chunks + the answer) needs about 4k tokens; speeds are quoted there.
USEFUL_CTX = 4096
#: Below ~8 tokens/s reading along with the answer feels slow.
USEFUL_TOKENS_PER_S = 8.0
#: Context grows past USEFUL_CTX only while decode speed (at USEFUL_CTX tokens) drops by at most this much.
CONTEXT_GROWTH_SPEED_LOSS = 0.10
#: Trained context assumed for a model planned by size only (Qwen2.5 and many others train at 32k).
DEFAULT_N_CTX_TRAIN = 32768

#: Effective bits per weight of llama.cpp quantisation mixes, scales included. Source: llama.cpp's quantize
#: tool table (examples/quantize, tools/quantize) and README figures; the K-quant "_M/_S" mixes keep some
#: tensors at a higher type, hence the odd numbers.
QUANT_BITS: dict[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K_M": 5.69,
    "Q5_K_S": 5.54,
    "Q5_1": 6.0,
    "Q5_0": 5.5,
    "Q4_K_M": 4.85,
    "Q4_K_S": 4.58,
    "Q4_1": 5.0,
    "Q4_0": 4.5,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.91,
    "Q3_K_S": 3.5,
    "IQ3_M": 3.66,
    "IQ3_S": 3.44,
    "IQ3_XS": 3.3,
    "IQ3_XXS": 3.06,
    "Q2_K": 3.35,
    "Q2_K_S": 2.96,
    "IQ2_M": 2.7,
    "IQ2_S": 2.5,
    "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06,
    "IQ1_M": 1.75,
    "IQ1_S": 1.56,
}

#: The quants the advisor compares for one model size, best quality first.
QUANT_LADDER: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")

#: KV cache bytes per element by llama.cpp cache type (quantised types include their block scales: q8_0 is
#: 34 bytes per 32 values, q4_0 18 per 32 ...).
KV_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}

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


def _gb(n: float) -> str:
    """Bytes as a short decimal figure: MB under 1 GB, GB above."""
    if abs(n) < GB:
        return f"{n / 1e6:.0f} MB"
    return f"{n / GB:.2f} GB"


def _params(n: float) -> str:
    """A parameter count the way the explanations print it: ``7.24e9``, ``135e6``."""
    return f"{n / 1e9:.3g}e9" if n >= 1e9 else f"{n / 1e6:.3g}e6"


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
            f"RAM: {_gb(self.ram_total_bytes)} total ({self.ram_total_bytes / GIB:.1f} GiB), "
            f"{_gb(self.ram_available_bytes)} available, ~{self.memory_bandwidth_gbs:g} GB/s "
            f"({self.bandwidth_source})",
        ]
        if not self.gpus:
            lines.append("GPU: none usable (no NVIDIA GPU seen through NVML)")
        for gpu in self.gpus:
            lines.append(
                f"GPU: {gpu.name}, {_gb(gpu.vram_total_bytes)} ({gpu.vram_total_bytes / GIB:.1f} GiB) VRAM, "
                f"{_gb(gpu.vram_free_bytes)} free, {gpu.bandwidth_gbs:g} GB/s"
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


def _linux_cpu() -> tuple[str, int]:
    """CPU model and physical core count from /proc/cpuinfo (0 cores when it does not say)."""
    model, cores, physical, core = "", set(), "0", None
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "Model", "Hardware") and not model:
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif not key and core is not None:
            cores.add((physical, core))
            core = None
    if core is not None:
        cores.add((physical, core))
    return model, len(cores)


def _linux_memory() -> tuple[int, int]:
    """Total and available RAM: MemAvailable counts reclaimable cache, which MemFree does not."""
    total = available = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        kib = int(value.split()[0]) * 1024 if value.split() and value.split()[0].isdigit() else 0
        if key == "MemTotal" and not total:
            total = kib
        elif key == "MemAvailable":
            available = kib
    # a container's memory limit is what actually runs out first (cgroup v2)
    limit = _read("/sys/fs/cgroup/memory.max").strip()
    if limit.isdigit() and 0 < int(limit) < total:
        used = _read("/sys/fs/cgroup/memory.current").strip()
        total = int(limit)
        available = min(available or total, total - (int(used) if used.isdigit() else 0))
    return total, available


def _sysctl(name: str) -> str:
    try:
        result = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
        return result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _macos() -> tuple[str, int, int, int, int]:
    """macOS via sysctl and vm_stat (best effort): model, physical, logical, total and available RAM."""
    model = _sysctl("machdep.cpu.brand_string")
    physical = int(_sysctl("hw.physicalcpu") or 0)
    logical = int(_sysctl("hw.logicalcpu") or 0)
    total = int(_sysctl("hw.memsize") or 0)
    available = 0
    try:
        vm = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5, check=False).stdout
        page = int(re.search(r"page size of (\d+)", vm).group(1)) if "page size of" in vm else 4096  # type: ignore[union-attr]
        pages = {k.strip(): int(v.strip().rstrip(".")) for k, v in re.findall(r"^(Pages [^:]+):\s+(\d+)\.?", vm, re.M)}
        available = page * sum(pages.get(k, 0) for k in ("Pages free", "Pages inactive", "Pages speculative"))
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return model, physical, logical, total, available


def _windows_memory() -> tuple[int, int]:
    """Windows RAM through GlobalMemoryStatusEx (best effort)."""

    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return int(status.ullTotalPhys), int(status.ullAvailPhys)
    return 0, 0


def _nvml_gpus() -> list[GPU]:
    """NVIDIA GPUs through NVML (``pynvml``, imported only here); none when it is missing or fails."""
    try:
        import pynvml  # type: ignore[import-not-found]
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


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's affinity mask), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect_hardware(memory_bandwidth_gbs: float | None = None) -> Hardware:
    """This machine, read cheaply and never raising: unknown values fall back to safe guesses.

    ``memory_bandwidth_gbs`` overrides the CPU RAM bandwidth, which is otherwise an estimate (Apple
    Silicon: the published figure; anything else: :data:`DEFAULT_CPU_BANDWIDTH_GBS`).
    """
    model, physical, logical, total, available = "", 0, _usable_cpus(), 0, 0
    system = platform.system()
    try:
        if system == "Linux":
            model, physical = _linux_cpu()
            total, available = _linux_memory()
        elif system == "Darwin":
            model, physical, mac_logical, total, available = _macos()
            logical = mac_logical or logical
        elif system == "Windows":
            total, available = _windows_memory()
    except Exception:  # detection is advice, never a failure
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    logical = max(1, logical)
    physical = min(max(1, physical or logical), logical)
    if not total:
        total = 8 * GIB  # nothing readable: assume a small machine rather than a large one
    if not available or available > total:
        available = total // 2
    if memory_bandwidth_gbs is not None:
        bandwidth, source = float(memory_bandwidth_gbs), "given"
    else:
        bandwidth, source = _cpu_bandwidth(model)
    try:
        gpus = _nvml_gpus()
    except Exception:
        gpus = []
    return Hardware(model, physical, logical, int(total), int(available), bandwidth, gpus, source)


# --- models --------------------------------------------------------------------------------------------


def bits_per_weight(quant: str) -> float:
    """Effective bits per weight of a llama.cpp quant name (case-insensitive), from :data:`QUANT_BITS`."""
    key = quant.upper()
    if key not in QUANT_BITS:
        raise ConfigError(f"Unknown quantisation {quant!r}: use one of {', '.join(QUANT_BITS)}")
    return QUANT_BITS[key]


# (params in billions, n_layers, n_embd, n_head, n_head_kv): typical dense decoder shapes.
_SHAPES: tuple[tuple[float, int, int, int, int], ...] = (
    (0.5, 24, 896, 14, 2),  # Qwen2.5-0.5B
    (1.0, 16, 2048, 32, 8),  # Llama-3.2-1B
    (3.0, 28, 3072, 24, 8),  # Llama-3.2-3B
    (7.0, 32, 4096, 32, 8),  # Llama-3-8B, Mistral-7B
    (13.5, 40, 5120, 40, 8),  # 13-14B class
    (33.0, 64, 5120, 40, 8),  # Qwen2.5-32B, 34B class
    (70.0, 80, 8192, 64, 8),  # Llama-3-70B
    (405.0, 126, 16384, 128, 8),  # Llama-3.1-405B
)


@dataclass(frozen=True)
class ModelSpec:
    """The few numbers that decide memory and speed. ``head_dim`` defaults to ``n_embd // n_head``.

    ``file_bytes`` is the exact GGUF size when a file is known (it beats any bits-per-weight table);
    ``active_params`` is set for mixture-of-experts models, whose tokens read only the experts they use.
    """

    name: str
    params: float
    n_layers: int
    n_ctx_train: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int | None = None
    quant: str = "Q4_K_M"
    file_bytes: int | None = None
    active_params: float | None = None
    architecture: str = "llama"

    def __post_init__(self) -> None:
        if self.params <= 0 or self.n_layers < 1 or self.n_head < 1 or self.n_head_kv < 1 or self.n_ctx_train < 1:
            raise ConfigError(f"Model {self.name!r} has an impossible shape: {self}")
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", max(1, self.n_embd // self.n_head))

    @property
    def params_b(self) -> float:
        """Parameters in billions."""
        return self.params / 1e9

    @property
    def bits_per_weight(self) -> float:
        """Effective bits per weight: measured from the file when known, else the quant's table value."""
        if self.file_bytes:
            return self.file_bytes * 8 / self.params
        return bits_per_weight(self.quant)

    @classmethod
    def from_params(
        cls, params_b: float, quant: str = "Q4_K_M", *, name: str | None = None, n_ctx_train: int | None = None
    ) -> ModelSpec:
        """A model planned by size ("32B at Q4_K_M"), shaped like the nearest typical dense transformer.

        The shape only matters for the KV cache and layer granularity; the weights come from the size.
        """
        if params_b <= 0:
            raise ConfigError(f"A model needs a positive size, not {params_b}B")
        bits_per_weight(quant)  # unknown quants fail here, with the list
        shape = min(_SHAPES, key=lambda s: abs(math.log(params_b / s[0])))
        _, n_layers, n_embd, n_head, n_head_kv = shape
        return cls(
            name=name or f"{params_b:g}B {quant.upper()}",
            params=params_b * 1e9,
            n_layers=n_layers,
            n_ctx_train=n_ctx_train or DEFAULT_N_CTX_TRAIN,
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=n_head_kv,
            quant=quant.upper(),
        )

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read the shape from a GGUF header (``gguf.GGUFReader`` maps the file; no tensor data is read).

        Raises ModelNotFoundError for a missing file and LoadError for a file that is not a usable GGUF.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            raise ModelNotFoundError(f"No GGUF file at {file}")
        stat = file.stat()
        return _spec_from_gguf(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


def _field(reader: Any, key: str) -> Any:
    """A GGUF metadata value (scalars as Python values, arrays as lists); None when absent."""
    f = reader.fields.get(key)
    if f is None:
        return None
    if hasattr(f, "contents"):
        return f.contents()
    values = [f.parts[i].tolist() for i in f.data]  # older gguf releases
    return values[0][0] if len(values) == 1 and len(values[0]) == 1 else values


def _as_int(value: Any) -> int | None:
    """Per-layer arrays (some architectures vary heads by layer) count at their largest: KV is not undercounted."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(max(value)) if value else None
    return int(value)


@functools.lru_cache(maxsize=16)
def _spec_from_gguf(path: str, size: int, mtime_ns: int) -> ModelSpec:
    """Parsing a header can take seconds (tokenizer arrays), so the result is cached per file version."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:
        raise LoadError(path, f"not a readable GGUF file ({exc})") from exc
    arch = _field(reader, "general.architecture") or "llama"

    def need(key: str) -> int:
        value = _as_int(_field(reader, f"{arch}.{key}"))
        if value is None:
            raise LoadError(path, f"GGUF header has no {arch}.{key}; cannot size this model")
        return value

    n_layers, n_embd, n_head = need("block_count"), need("embedding_length"), need("attention.head_count")
    n_head_kv = _as_int(_field(reader, f"{arch}.attention.head_count_kv")) or n_head
    n_ctx_train = _as_int(_field(reader, f"{arch}.context_length")) or MIN_CTX
    head_dim = _as_int(_field(reader, f"{arch}.attention.key_length")) or None

    tensors = list(reader.tensors)
    total = sum(int(t.n_elements) for t in tensors)
    params = float(_as_int(_field(reader, "general.parameter_count")) or total)
    active = None
    expert_count = _as_int(_field(reader, f"{arch}.expert_count")) or 0
    expert_used = _as_int(_field(reader, f"{arch}.expert_used_count")) or 0
    if expert_count > 1 and 0 < expert_used < expert_count:
        experts = sum(int(t.n_elements) for t in tensors if "_exps" in t.name)
        active = params - experts * (1 - expert_used / expert_count)

    quant = ""
    file_type = _as_int(_field(reader, "general.file_type"))
    if file_type is not None:
        try:
            quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            quant = ""
    if not quant or quant == "GUESSED":
        by_type: dict[str, int] = {}
        for t in tensors:
            if len(t.shape) >= 2:
                by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + int(t.n_bytes)
        quant = max(by_type, key=by_type.__getitem__) if by_type else "unknown"

    name = _field(reader, "general.name") or Path(path).stem
    return ModelSpec(
        name=str(name),
        params=params,
        n_layers=n_layers,
        n_ctx_train=n_ctx_train,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        quant=quant,
        file_bytes=size,
        active_params=active,
        architecture=str(arch),
    )


def spec_from_size(text: str, quant: str | None = None) -> ModelSpec | None:
    """Parse a size the CLI accepts ("32B", "7.5b", "135M", "32B:Q8_0", "32B-Q8_0"); None if it is not one."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bBmM])(?:[:@ _-]([A-Za-z0-9_]+))?\s*", text)
    if not match:
        return None
    size = float(match.group(1)) * (1.0 if match.group(2).lower() == "b" else 1e-3)
    return ModelSpec.from_params(size, (quant or match.group(3) or "Q4_K_M").upper())


def candidate_quants(params_b: float, n_ctx_train: int | None = None) -> list[ModelSpec]:
    """One model size at each quant of :data:`QUANT_LADDER`, so a plan can say "fits at Q4_K_M, not Q8_0"."""
    return [ModelSpec.from_params(params_b, q, n_ctx_train=n_ctx_train) for q in QUANT_LADDER]


# --- memory --------------------------------------------------------------------------------------------


def weights_bytes(spec: ModelSpec) -> int:
    """Bytes of weights: the exact file size when known, else ``params × bits_per_weight / 8``."""
    if spec.file_bytes:
        return int(spec.file_bytes)
    return int(spec.params * bits_per_weight(spec.quant) / 8)


def _kv_bytes_per_element(kv_cache_type: str) -> float:
    key = kv_cache_type.lower()
    if key not in KV_BYTES:
        raise ConfigError(f"Unknown KV cache type {kv_cache_type!r}: use one of {', '.join(KV_BYTES)}")
    return KV_BYTES[key]


def kv_cache_bytes(spec: ModelSpec, n_ctx: int, kv_cache_type: str = "f16") -> int:
    """``2 (K and V) × n_layers × n_ctx × n_head_kv × head_dim × bytes_per_element``: GQA shrinks it by
    ``n_head / n_head_kv``, which is why modern models afford long contexts."""
    head_dim = spec.head_dim or 1  # always set by ModelSpec.__post_init__
    return int(2 * spec.n_layers * n_ctx * spec.n_head_kv * head_dim * _kv_bytes_per_element(kv_cache_type))


def _fixed_overhead(spec: ModelSpec) -> int:
    return int(min(max(OVERHEAD_FRACTION * weights_bytes(spec), OVERHEAD_MIN_BYTES), OVERHEAD_MAX_BYTES))


def _scratch(spec: ModelSpec, n_ctx: int) -> int:
    return int(n_ctx * N_UBATCH * spec.n_head * 4)


def compute_overhead_bytes(spec: ModelSpec, n_ctx: int) -> int:
    """One backend's compute buffers + runtime: 5% of the weights clamped to 300 MB…1.5 GB (wider models
    need bigger activations) plus the f32 attention scores of one batch, ``n_ctx × n_ubatch × n_head × 4``."""
    return _fixed_overhead(spec) + _scratch(spec, n_ctx)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by purpose, and (for a placement) by device. ``total`` is the sum of the four purposes."""

    spec: ModelSpec
    n_ctx: int
    kv_cache_type: str
    gpu_layers: int
    weights: int
    kv_cache: int
    compute_overhead: int
    vector_index: int
    total: int
    gpu_bytes: int
    cpu_bytes: int

    def explain(self) -> list[str]:
        """The arithmetic behind each figure."""
        s = self.spec
        if s.file_bytes:
            weights = f"weights: {_gb(self.weights)} (GGUF file size; {s.bits_per_weight:.2f} bits/weight effective)"
        else:
            bits = bits_per_weight(s.quant)
            weights = f"weights: {_params(s.params)} params × {bits:g} bits ({s.quant}) / 8 = {_gb(self.weights)}"
        per_elem = _kv_bytes_per_element(self.kv_cache_type)
        backends = 2 if 0 < self.gpu_layers < s.n_layers else 1
        lines = [
            weights,
            f"KV cache: 2 × {s.n_layers} layers × {self.n_ctx} ctx × {s.n_head_kv} kv heads × {s.head_dim} dims × "
            f"{per_elem:g} bytes ({self.kv_cache_type}) = {_gb(self.kv_cache)}",
            f"compute buffers: ({_gb(_fixed_overhead(s))} runtime [5% of weights, 300 MB…1.5 GB] + "
            f"{self.n_ctx} ctx × {N_UBATCH} ubatch × {s.n_head} heads × 4 bytes = {_gb(_scratch(s, self.n_ctx))} "
            f"attention scratch) × {backends} backend{'s' if backends > 1 else ''} = {_gb(self.compute_overhead)}",
        ]
        if self.vector_index:
            lines.append(f"vector index (local collections, in RAM): {_gb(self.vector_index)}")
        lines.append(
            f"total: {_gb(self.weights)} + {_gb(self.kv_cache)} + {_gb(self.compute_overhead)}"
            + (f" + {_gb(self.vector_index)}" if self.vector_index else "")
            + f" = {_gb(self.total)}"
        )
        if self.gpu_layers:
            lines.append(
                f"split: {self.gpu_layers}/{s.n_layers} layers on GPU = {_gb(self.gpu_bytes)} VRAM, "
                f"{_gb(self.cpu_bytes)} RAM"
            )
        return lines


def estimate_memory(
    spec: ModelSpec,
    n_ctx: int,
    kv_cache_type: str = "f16",
    index_bytes: int = 0,
    gpu_layers: int | None = None,
) -> MemoryEstimate:
    """Memory to run ``spec`` at ``n_ctx`` with ``gpu_layers`` layers offloaded (None or 0: CPU only).

    Layers carry their weights and KV cache to the device they run on (llama.cpp's default with
    ``offload_kqv``); every backend in use allocates its own compute buffers; the vector index stays in RAM.
    """
    layers = min(max(gpu_layers or 0, 0), spec.n_layers)
    weights = weights_bytes(spec)
    kv = kv_cache_bytes(spec, n_ctx, kv_cache_type)
    overhead = compute_overhead_bytes(spec, n_ctx)
    fraction = layers / spec.n_layers
    gpu = int(fraction * (weights + kv)) + (overhead if layers else 0)
    cpu = (weights + kv - int(fraction * (weights + kv))) + (overhead if layers < spec.n_layers else 0) + index_bytes
    total_overhead = overhead * (2 if 0 < layers < spec.n_layers else 1)
    return MemoryEstimate(
        spec=spec,
        n_ctx=n_ctx,
        kv_cache_type=kv_cache_type.lower(),
        gpu_layers=layers,
        weights=weights,
        kv_cache=kv,
        compute_overhead=total_overhead,
        vector_index=index_bytes,
        total=weights + kv + total_overhead + index_bytes,
        gpu_bytes=gpu,
        cpu_bytes=cpu,
    )


# --- speed ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedEstimate:
    """Decode speed from bytes read per token and the bandwidth of wherever those bytes live."""

    tokens_per_s: float
    seconds_per_token: float
    gpu_bytes_per_token: int
    cpu_bytes_per_token: int
    gpu_bandwidth_gbs: float
    cpu_bandwidth_gbs: float
    n_ctx_filled: int
    lines: tuple[str, ...]

    def explain(self) -> list[str]:
        """The arithmetic behind ``tokens_per_s``."""
        return list(self.lines)


def _gpu_bandwidth(hardware: Hardware) -> float:
    """Several GPUs split layers and a token passes through them in turn: the slowest one is the bound."""
    return min(g.bandwidth_gbs for g in hardware.gpus) if hardware.gpus else 0.0


def estimate_speed(
    spec: ModelSpec,
    hardware: Hardware,
    gpu_layers: int = 0,
    n_ctx_filled: int = USEFUL_CTX,
    kv_cache_type: str = "f16",
) -> SpeedEstimate:
    """Decode tokens/s ≈ efficiency × bandwidth / bytes read per token (memory-bound, as decoding is).

    Each token reads the active weights once plus the KV cache of the ``n_ctx_filled`` tokens so far;
    with partial offload the GPU part and the CPU part run in turn, so ``time = gpu/gpu_bw + cpu/cpu_bw``.
    Prompt processing is compute-bound and not estimated here.
    """
    layers = min(max(gpu_layers, 0), spec.n_layers) if hardware.gpus else 0
    weights = weights_bytes(spec)
    active_fraction = (spec.active_params / spec.params) if spec.active_params else 1.0
    read_weights = weights * active_fraction
    kv = kv_cache_bytes(spec, n_ctx_filled, kv_cache_type)
    per_token = read_weights + kv
    gpu_part = int(per_token * layers / spec.n_layers)
    cpu_part = int(per_token) - gpu_part
    gpu_bw = _gpu_bandwidth(hardware) * GPU_EFFICIENCY * GB
    cpu_bw = hardware.memory_bandwidth_gbs * CPU_EFFICIENCY * GB
    seconds = (gpu_part / gpu_bw if gpu_part else 0.0) + (cpu_part / cpu_bw if cpu_part else 0.0)
    tps = 1.0 / seconds if seconds > 0 else float("inf")
    moe = f" × {active_fraction:.2f} active (MoE)" if spec.active_params else ""
    lines = [
        f"bytes per token: {_gb(weights)} weights{moe} + {_gb(kv)} KV at {n_ctx_filled} tokens = {_gb(per_token)}",
    ]
    terms = []
    if gpu_part:
        terms.append(f"{_gb(gpu_part)} / ({GPU_EFFICIENCY:g} × {_gpu_bandwidth(hardware):g} GB/s GPU)")
    if cpu_part:
        terms.append(
            f"{_gb(cpu_part)} / ({CPU_EFFICIENCY:g} × {hardware.memory_bandwidth_gbs:g} GB/s CPU RAM, "
            f"{hardware.bandwidth_source})"
        )
    lines.append(f"time per token: {' + '.join(terms)} = {seconds * 1000:.1f} ms → {tps:.1f} tokens/s")
    return SpeedEstimate(
        tokens_per_s=tps,
        seconds_per_token=seconds,
        gpu_bytes_per_token=gpu_part,
        cpu_bytes_per_token=cpu_part,
        gpu_bandwidth_gbs=_gpu_bandwidth(hardware),
        cpu_bandwidth_gbs=hardware.memory_bandwidth_gbs,
        n_ctx_filled=n_ctx_filled,
        lines=tuple(lines),
    )


# --- planning ------------------------------------------------------------------------------------------


def ram_budget_bytes(hardware: Hardware, index_bytes: int = 0) -> int:
    """RAM the model may use: available − max(15% of total, 1.5 GB) headroom − the vector index."""
    headroom = max(int(RAM_HEADROOM_FRACTION * hardware.ram_total_bytes), RAM_HEADROOM_MIN_BYTES)
    return max(0, hardware.ram_available_bytes - headroom - index_bytes)


def vram_budget_bytes(hardware: Hardware) -> int:
    """VRAM the model may use: free VRAM of all GPUs (llama.cpp splits layers across them) less 10%."""
    return int(sum(g.vram_free_bytes for g in hardware.gpus) * (1 - VRAM_HEADROOM))


@dataclass(frozen=True)
class Plan:
    """Where a model runs on a machine, with how much context, how fast, and the reasoning.

    ``tokens_per_s`` is decode speed with ``min(n_ctx, USEFUL_CTX)`` tokens in the context (a typical RAG
    prompt); ``tokens_per_s_full`` is the speed once the whole ``n_ctx`` is filled. ``reason`` is one
    sentence; ``explain()`` gives every step.
    """

    spec: ModelSpec
    hardware: Hardware
    fits: bool
    where: Where
    gpu_layers: int
    n_ctx: int
    memory: MemoryEstimate
    tokens_per_s: float
    tokens_per_s_full: float
    reason: str
    steps: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Fits, at least :data:`USEFUL_CTX` context and :data:`USEFUL_TOKENS_PER_S` tokens/s."""
        return self.fits and self.n_ctx >= USEFUL_CTX and self.tokens_per_s >= USEFUL_TOKENS_PER_S

    @property
    def cpu_layers(self) -> int:
        return self.spec.n_layers - self.gpu_layers if self.fits else 0

    def explain(self) -> list[str]:
        """Model, machine, budgets, memory arithmetic, placement, context choice, speed, verdict."""
        s = self.spec
        lines = [
            f"model: {s.name} — {_params(s.params)} params, {s.quant}, {s.n_layers} layers, trained ctx "
            f"{s.n_ctx_train}, {s.n_head} heads / {s.n_head_kv} kv heads × {s.head_dim} dims",
            f"machine: {self.hardware.name}",
            *(f"  {line}" for line in self.hardware.describe()),
            *self.steps,
            f"memory at {self.n_ctx} ctx:",
            *(f"  {line}" for line in self.memory.explain()),
        ]
        if self.fits:
            speed = estimate_speed(
                s, self.hardware, self.gpu_layers, min(self.n_ctx, USEFUL_CTX), self.memory.kv_cache_type
            )
            full = estimate_speed(s, self.hardware, self.gpu_layers, self.n_ctx, self.memory.kv_cache_type)
            lines += ["speed (decode, memory-bound):", *(f"  {line}" for line in speed.explain())]
            if self.n_ctx > speed.n_ctx_filled:
                lines.append(f"  with all {self.n_ctx} tokens filled: {full.tokens_per_s:.1f} tokens/s")
        lines.append(f"verdict: {self.reason}")
        return lines


@dataclass(frozen=True)
class _Placement:
    where: Where
    gpu_layers: int
    steps: tuple[str, ...]
    failure: str = ""


def _place(hardware: Hardware, spec: ModelSpec, n_ctx: int, kv_cache_type: str, index_bytes: int) -> _Placement:
    """All on the GPU, else as many whole layers as fit on it with the rest in RAM, else CPU, else nothing."""
    ram = ram_budget_bytes(hardware, index_bytes)
    vram = vram_budget_bytes(hardware)
    weights = weights_bytes(spec)
    kv = kv_cache_bytes(spec, n_ctx, kv_cache_type)
    overhead = compute_overhead_bytes(spec, n_ctx)
    per_layer = (weights + kv) / spec.n_layers
    need_cpu_only = weights + kv + overhead
    steps: list[str] = []
    room = ram_budget_bytes(hardware)
    if index_bytes > room:
        failure = f"the vector index alone needs {_gb(index_bytes)} of RAM but the RAM budget is {_gb(room)}"
        return _Placement("none", 0, (f"ctx {n_ctx}: {failure}",), failure)
    if hardware.gpus:
        need_gpu = weights + kv + overhead
        if need_gpu <= vram:
            steps.append(
                f"ctx {n_ctx}: all {spec.n_layers} layers + buffers = {_gb(need_gpu)} ≤ VRAM budget {_gb(vram)} "
                "→ fully on the GPU"
            )
            return _Placement("gpu", spec.n_layers, tuple(steps))
        layers = int((vram - overhead) // per_layer) if vram > overhead else 0
        layers = min(layers, spec.n_layers - 1)
        steps.append(
            f"ctx {n_ctx}: {_gb(need_gpu)} > VRAM budget {_gb(vram)}; per layer {_gb(weights / spec.n_layers)} "
            f"weights + {_gb(kv / spec.n_layers)} KV = {_gb(per_layer)}; ({_gb(vram)} − {_gb(overhead)} buffers) / "
            f"{_gb(per_layer)} = {max(layers, 0)} layers fit on the GPU"
        )
        if layers >= 1:
            rest = spec.n_layers - layers
            need_ram = rest * per_layer + overhead
            if need_ram <= ram:
                steps.append(
                    f"ctx {n_ctx}: other {rest} layers in RAM: {rest} × {_gb(per_layer)} + {_gb(overhead)} buffers "
                    f"= {_gb(need_ram)} ≤ RAM budget {_gb(ram)} → partial offload ({layers}/{spec.n_layers} on GPU)"
                )
                return _Placement("partial", layers, tuple(steps))
            steps.append(f"ctx {n_ctx}: the other {rest} layers need {_gb(need_ram)} > RAM budget {_gb(ram)}")
    if need_cpu_only <= ram:
        steps.append(f"ctx {n_ctx}: weights + KV + buffers = {_gb(need_cpu_only)} ≤ RAM budget {_gb(ram)} → CPU only")
        return _Placement("cpu", 0, tuple(steps))
    capacity = ram + (vram - overhead if hardware.gpus and vram > overhead else 0)
    where = f"RAM budget {_gb(ram)}"
    if hardware.gpus:
        where += f" + VRAM budget {_gb(vram)} − {_gb(overhead)} GPU buffers = {_gb(capacity)}"
    failure = (
        f"needs {_gb(need_cpu_only)} at {n_ctx} ctx (weights {_gb(weights)} + KV {_gb(kv)} + buffers "
        f"{_gb(overhead)}) but the machine offers {where}"
    )
    steps.append(f"ctx {n_ctx}: {failure}")
    return _Placement("none", 0, tuple(steps), failure)


def _contexts(spec: ModelSpec) -> list[int]:
    """Powers of two from MIN_CTX to the trained context, plus the trained context itself."""
    if spec.n_ctx_train <= MIN_CTX:
        return [spec.n_ctx_train]
    out, n = [], MIN_CTX
    while n <= spec.n_ctx_train:
        out.append(n)
        n *= 2
    if out[-1] != spec.n_ctx_train:
        out.append(spec.n_ctx_train)
    return out


def _smaller_quant_hint(hardware: Hardware, spec: ModelSpec, n_ctx: int, kv_cache_type: str, index_bytes: int) -> str:
    """The best quant of the ladder that would fit, when the requested one does not."""
    try:
        current = spec.bits_per_weight
    except ConfigError:
        return ""
    for quant in QUANT_LADDER:
        if bits_per_weight(quant) >= current:
            continue
        candidate = replace(spec, quant=quant, file_bytes=None, name=f"{spec.name} {quant}")
        if _place(hardware, candidate, n_ctx, kv_cache_type, index_bytes).where != "none":
            return f"; it would fit at {quant} ({_gb(weights_bytes(candidate))} of weights)"
    return "; no quant down to Q2_K fits: pick a smaller model"


def _make_plan(
    hardware: Hardware,
    spec: ModelSpec,
    n_ctx: int,
    placement: _Placement,
    kv_cache_type: str,
    index_bytes: int,
    steps: list[str],
) -> Plan:
    fits = placement.where != "none"
    layers = placement.gpu_layers if fits else 0
    memory = estimate_memory(spec, n_ctx, kv_cache_type, index_bytes, layers)
    if fits:
        fast = estimate_speed(spec, hardware, layers, min(n_ctx, USEFUL_CTX), kv_cache_type).tokens_per_s
        full = estimate_speed(spec, hardware, layers, n_ctx, kv_cache_type).tokens_per_s
        place = {
            "gpu": "fully on the GPU",
            "partial": f"{layers}/{spec.n_layers} layers on the GPU, {spec.n_layers - layers} in RAM",
            "cpu": "on the CPU only",
        }[placement.where]
        reason = f"{spec.name} fits {place} at {n_ctx} ctx, ~{fast:.1f} tokens/s ({_gb(memory.total)} in all)"
        if n_ctx > spec.n_ctx_train:
            reason += f"; beyond its trained context of {spec.n_ctx_train}, quality may drop"
    else:
        fast = full = 0.0
        reason = f"{spec.name} does not fit: {placement.failure}"
        reason += _smaller_quant_hint(hardware, spec, n_ctx, kv_cache_type, index_bytes)
    return Plan(spec, hardware, fits, placement.where, layers, n_ctx, memory, fast, full, reason, tuple(steps))


def _plan_one(hardware: Hardware, spec: ModelSpec, n_ctx: int | None, index_bytes: int, kv_cache_type: str) -> Plan:
    if n_ctx is not None:
        if n_ctx < 1:
            raise ConfigError(f"A context of {n_ctx} tokens is not possible")
        placement = _place(hardware, spec, n_ctx, kv_cache_type, index_bytes)
        return _make_plan(
            hardware,
            spec,
            n_ctx,
            placement,
            kv_cache_type,
            index_bytes,
            [f"context {n_ctx}: as requested", *placement.steps],
        )
    contexts = _contexts(spec)
    base = min(USEFUL_CTX, spec.n_ctx_train)
    placement = _place(hardware, spec, base, kv_cache_type, index_bytes)
    steps = list(placement.steps)
    if placement.where == "none" and base > MIN_CTX:
        smaller = _place(hardware, spec, MIN_CTX, kv_cache_type, index_bytes)
        steps += smaller.steps
        if smaller.where != "none":
            steps.append(f"context {MIN_CTX}: the only size that fits (short for RAG prompts)")
            return _make_plan(hardware, spec, MIN_CTX, smaller, kv_cache_type, index_bytes, steps)
    if placement.where == "none":
        return _make_plan(hardware, spec, base, placement, kv_cache_type, index_bytes, steps)
    base_speed = estimate_speed(spec, hardware, placement.gpu_layers, base, kv_cache_type).tokens_per_s
    chosen, chosen_ctx = placement, base
    for ctx in (c for c in contexts if c > base):
        trial = _place(hardware, spec, ctx, kv_cache_type, index_bytes)
        speed = estimate_speed(spec, hardware, trial.gpu_layers, base, kv_cache_type).tokens_per_s
        if trial.where != placement.where or speed < (1 - CONTEXT_GROWTH_SPEED_LOSS) * base_speed:
            if trial.where == "none":
                why = "does not fit"
            elif trial.where != placement.where:
                why = f"would move it from '{placement.where}' to '{trial.where}'"
            else:
                why = f"only {trial.gpu_layers} GPU layers, {speed:.1f} vs {base_speed:.1f} tokens/s"
            steps.append(f"context {ctx}: {why} → stay at {chosen_ctx}")
            break
        chosen, chosen_ctx = trial, ctx
    if chosen_ctx != base:
        steps += chosen.steps
    steps.append(
        f"context {chosen_ctx}: the largest of {contexts[0]}…{spec.n_ctx_train} (powers of two up to the trained "
        f"context) that keeps the '{placement.where}' placement within {CONTEXT_GROWTH_SPEED_LOSS:.0%} of its speed"
    )
    return _make_plan(hardware, spec, chosen_ctx, chosen, kv_cache_type, index_bytes, steps)


_TIER = {"gpu": 0, "partial": 1, "cpu": 2, "none": 3}


def _rank(p: Plan) -> tuple[float, ...]:
    """Sort key, best first. Usable plans (≥ 8 tokens/s, ≥ 4096 ctx) come first: the largest model, then
    the better placement (all-GPU before partial before CPU: the usual "pick the quant that fits in VRAM"
    advice), then the higher-precision quant, then speed. Plans that fit but are slow or short follow,
    fastest first; plans that do not fit come last, smallest first."""
    if p.usable:
        return (0, -p.spec.params, _TIER[p.where], -p.spec.bits_per_weight, -p.tokens_per_s)
    if p.fits:
        return (1, -p.tokens_per_s, -p.spec.params, 0, 0)
    return (2, p.memory.total, 0, 0, 0)


def recommend(
    hardware: Hardware,
    candidates: Sequence[ModelSpec],
    index_bytes: int = 0,
    n_ctx: int | None = None,
    kv_cache_type: str = "f16",
) -> list[Plan]:
    """Plan every candidate, best first: the largest model that fits at ≥ 8 tokens/s and ≥ 4096 ctx; for
    one size, all-GPU before partial offload, then the higher-precision quant, then speed (see ``_rank``)."""
    plans = [_plan_one(hardware, spec, n_ctx, index_bytes, kv_cache_type) for spec in candidates]
    return sorted(plans, key=_rank)


def plan(
    hardware: Hardware,
    spec_or_candidates: ModelSpec | Sequence[ModelSpec],
    n_ctx: int | None = None,
    index_bytes: int = 0,
    kv_cache_type: str = "f16",
) -> Plan:
    """Where and how one model runs (or the best of several candidates, as :func:`recommend` ranks them).

    ``n_ctx`` None picks the context: 4096 (or the trained maximum if smaller; 2048 if only that fits),
    grown by powers of two while the placement and ~90% of the speed hold. ``index_bytes`` is RAM the local
    collections' vectors and ANN index need alongside the model.
    """
    _kv_bytes_per_element(kv_cache_type)
    if isinstance(spec_or_candidates, ModelSpec):
        return _plan_one(hardware, spec_or_candidates, n_ctx, index_bytes, kv_cache_type)
    candidates = list(spec_or_candidates)
    if not candidates:
        raise ConfigError("No candidate models to plan")
    return recommend(hardware, candidates, index_bytes, n_ctx, kv_cache_type)[0]
