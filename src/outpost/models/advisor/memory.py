"""Memory a model needs: weights, KV cache, compute buffers, and the vector index beside it, by device.

* **Weights** take ``params × bits_per_weight / 8`` bytes (or the exact GGUF size when the file is known).
* **KV cache** takes ``2 (K and V) × n_layers × n_ctx × n_head_kv × head_dim × bytes_per_element``.
* **Compute buffers** (llama.cpp's scratch plus runtime) are an estimate: 5% of the weights, clamped to
  300 MB…1.5 GB, plus the attention score matrix ``n_ctx × n_ubatch × n_head × 4`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from outpost.errors import ConfigError
from outpost.models.advisor.specs import ModelSpec, bits_per_weight
from outpost.models.advisor.units import gb, params_text

__all__ = [
    "KV_BYTES",
    "N_UBATCH",
    "MemoryEstimate",
    "compute_overhead_bytes",
    "estimate_memory",
    "kv_bytes_per_element",
    "kv_cache_bytes",
    "weights_bytes",
]

#: llama.cpp compute buffers + runtime: 5% of the weights, clamped, plus the n_ctx-proportional KQ scratch.
OVERHEAD_FRACTION = 0.05
OVERHEAD_MIN_BYTES = int(300e6)
OVERHEAD_MAX_BYTES = int(1.5e9)
#: llama.cpp's default physical batch (n_ubatch): the attention scores are n_ctx × n_ubatch × n_head floats.
N_UBATCH = 512

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


def weights_bytes(spec: ModelSpec) -> int:
    """Bytes of weights: the exact file size when known, else ``params × bits_per_weight / 8``."""
    if spec.file_bytes:
        return int(spec.file_bytes)
    return int(spec.params * bits_per_weight(spec.quant) / 8)


def kv_bytes_per_element(kv_cache_type: str) -> float:
    key = kv_cache_type.lower()
    if key not in KV_BYTES:
        raise ConfigError(f"Unknown KV cache type {kv_cache_type!r}: use one of {', '.join(KV_BYTES)}")
    return KV_BYTES[key]


def kv_cache_bytes(spec: ModelSpec, n_ctx: int, kv_cache_type: str = "f16") -> int:
    """``2 (K and V) × n_layers × n_ctx × n_head_kv × head_dim × bytes_per_element``: GQA shrinks it by
    ``n_head / n_head_kv``, which is why modern models afford long contexts."""
    head_dim = spec.head_dim or 1  # always set by ModelSpec.__post_init__
    return int(2 * spec.n_layers * n_ctx * spec.n_head_kv * head_dim * kv_bytes_per_element(kv_cache_type))


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
            weights = f"weights: {gb(self.weights)} (GGUF file size; {s.bits_per_weight:.2f} bits/weight effective)"
        else:
            bits = bits_per_weight(s.quant)
            weights = f"weights: {params_text(s.params)} params × {bits:g} bits ({s.quant}) / 8 = {gb(self.weights)}"
        per_elem = kv_bytes_per_element(self.kv_cache_type)
        backends = 2 if 0 < self.gpu_layers < s.n_layers else 1
        lines = [
            weights,
            f"KV cache: 2 × {s.n_layers} layers × {self.n_ctx} ctx × {s.n_head_kv} kv heads × {s.head_dim} dims × "
            f"{per_elem:g} bytes ({self.kv_cache_type}) = {gb(self.kv_cache)}",
            f"compute buffers: ({gb(_fixed_overhead(s))} runtime [5% of weights, 300 MB…1.5 GB] + "
            f"{self.n_ctx} ctx × {N_UBATCH} ubatch × {s.n_head} heads × 4 bytes = {gb(_scratch(s, self.n_ctx))} "
            f"attention scratch) × {backends} backend{'s' if backends > 1 else ''} = {gb(self.compute_overhead)}",
        ]
        if self.vector_index:
            lines.append(f"vector index (local collections, in RAM): {gb(self.vector_index)}")
        lines.append(
            f"total: {gb(self.weights)} + {gb(self.kv_cache)} + {gb(self.compute_overhead)}"
            + (f" + {gb(self.vector_index)}" if self.vector_index else "")
            + f" = {gb(self.total)}"
        )
        if self.gpu_layers:
            lines.append(
                f"split: {self.gpu_layers}/{s.n_layers} layers on GPU = {gb(self.gpu_bytes)} VRAM, "
                f"{gb(self.cpu_bytes)} RAM"
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
