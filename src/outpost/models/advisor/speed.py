"""Decode speed: memory-bound, so tokens/s follow from the bytes each token reads and where they live.

Every generated token reads all (active) weights plus the KV cache written so far, so
``tokens/s ≈ efficiency × bandwidth / bytes_per_token``; with partial offload the GPU part and the CPU part
are read one after the other, so their times add.
"""

from __future__ import annotations

from dataclasses import dataclass

from outpost.models.advisor.hardware import Hardware
from outpost.models.advisor.memory import kv_cache_bytes, weights_bytes
from outpost.models.advisor.specs import ModelSpec
from outpost.models.advisor.units import GB, gb

__all__ = ["CPU_EFFICIENCY", "GPU_EFFICIENCY", "USEFUL_CTX", "SpeedEstimate", "estimate_speed"]

#: Fraction of the memory bandwidth llama.cpp decoding reaches in practice (CPU: ~55-65%, GPU: ~65-80%).
CPU_EFFICIENCY = 0.6
GPU_EFFICIENCY = 0.7
#: A RAG prompt (question + a few retrieved chunks + the answer) needs about 4k tokens; speeds are quoted there.
USEFUL_CTX = 4096


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
        f"bytes per token: {gb(weights)} weights{moe} + {gb(kv)} KV at {n_ctx_filled} tokens = {gb(per_token)}",
    ]
    terms = []
    if gpu_part:
        terms.append(f"{gb(gpu_part)} / ({GPU_EFFICIENCY:g} × {_gpu_bandwidth(hardware):g} GB/s GPU)")
    if cpu_part:
        terms.append(
            f"{gb(cpu_part)} / ({CPU_EFFICIENCY:g} × {hardware.memory_bandwidth_gbs:g} GB/s CPU RAM, "
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
