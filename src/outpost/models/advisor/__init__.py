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

One module per step, each importing only those before it:

========================  ============================================================================
``hardware``              the machine: CPU, RAM, NVIDIA GPUs (NVML), bandwidths; synthetic profiles
``specs``                 a model's shape, from a GGUF header (``models/gguf_header.py``) or from a size
``memory``                weights, KV cache, compute buffers, by device
``speed``                 decode tokens/s from bytes per token and bandwidth
``planning``              placement and context choice, ranking of candidates, ``offload_layers``
``units``                 how figures are printed
========================  ============================================================================

Import from the package (``from outpost.models.advisor import plan``): the modules are its layout, the
names below are its surface.
"""

from __future__ import annotations

from outpost.models.advisor.hardware import (
    DEFAULT_CPU_BANDWIDTH_GBS,
    DEFAULT_GPU_BANDWIDTH_GBS,
    GPU,
    PROFILES,
    Hardware,
    detect_hardware,
    gpu_bandwidth_gbs,
)
from outpost.models.advisor.memory import (
    MemoryEstimate,
    compute_overhead_bytes,
    estimate_memory,
    kv_cache_bytes,
    weights_bytes,
)
from outpost.models.advisor.planning import (
    ALL_LAYERS,
    USEFUL_TOKENS_PER_S,
    Plan,
    offload_layers,
    plan,
    ram_budget_bytes,
    recommend,
    vram_budget_bytes,
)
from outpost.models.advisor.specs import (
    QUANT_BITS,
    QUANT_LADDER,
    ModelSpec,
    bits_per_weight,
    candidate_quants,
    spec_from_size,
)
from outpost.models.advisor.speed import CPU_EFFICIENCY, GPU_EFFICIENCY, USEFUL_CTX, SpeedEstimate, estimate_speed

__all__ = [
    "ALL_LAYERS",
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
    "offload_layers",
    "plan",
    "ram_budget_bytes",
    "recommend",
    "spec_from_size",
    "vram_budget_bytes",
    "weights_bytes",
]
