"""The plan: where a model runs on a machine (all on the GPU, some layers on it, CPU only), with how much
context, how fast, and every step of the reasoning.

Placement follows llama.cpp: whole layers (weights and their KV cache) go to the GPU with ``-ngl``; the
rest stays in RAM. The advisor prefers all-GPU, then partial offload, then CPU only, and then grows the
context while that costs (almost) no speed. :func:`offload_layers` turns a plan into the ``n_gpu_layers``
the llama.cpp runtime is loaded with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from outpost.errors import ConfigError
from outpost.models.advisor.hardware import Hardware, detect_hardware
from outpost.models.advisor.memory import (
    MemoryEstimate,
    compute_overhead_bytes,
    estimate_memory,
    kv_bytes_per_element,
    kv_cache_bytes,
    weights_bytes,
)
from outpost.models.advisor.specs import MIN_CTX, QUANT_LADDER, ModelSpec, bits_per_weight
from outpost.models.advisor.speed import USEFUL_CTX, estimate_speed
from outpost.models.advisor.units import gb, params_text

__all__ = [
    "ALL_LAYERS",
    "CONTEXT_GROWTH_SPEED_LOSS",
    "USEFUL_TOKENS_PER_S",
    "Plan",
    "Where",
    "offload_layers",
    "plan",
    "ram_budget_bytes",
    "recommend",
    "vram_budget_bytes",
]

log = logging.getLogger(__name__)

Where = Literal["gpu", "partial", "cpu", "none"]

#: VRAM kept free (fragmentation, CUDA context growth, the display).
VRAM_HEADROOM = 0.10
#: RAM kept free for the OS and other programs: 15% of the total or 1.5 GB, whichever is larger.
RAM_HEADROOM_FRACTION = 0.15
RAM_HEADROOM_MIN_BYTES = int(1.5e9)
#: Below ~8 tokens/s reading along with the answer feels slow.
USEFUL_TOKENS_PER_S = 8.0
#: Context grows past USEFUL_CTX only while decode speed (at USEFUL_CTX tokens) drops by at most this much.
CONTEXT_GROWTH_SPEED_LOSS = 0.10


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
            f"model: {s.name} — {params_text(s.params)} params, {s.quant}, {s.n_layers} layers, trained ctx "
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
        failure = f"the vector index alone needs {gb(index_bytes)} of RAM but the RAM budget is {gb(room)}"
        return _Placement("none", 0, (f"ctx {n_ctx}: {failure}",), failure)
    if hardware.gpus:
        need_gpu = weights + kv + overhead
        if need_gpu <= vram:
            steps.append(
                f"ctx {n_ctx}: all {spec.n_layers} layers + buffers = {gb(need_gpu)} ≤ VRAM budget {gb(vram)} "
                "→ fully on the GPU"
            )
            return _Placement("gpu", spec.n_layers, tuple(steps))
        layers = int((vram - overhead) // per_layer) if vram > overhead else 0
        layers = min(layers, spec.n_layers - 1)
        steps.append(
            f"ctx {n_ctx}: {gb(need_gpu)} > VRAM budget {gb(vram)}; per layer {gb(weights / spec.n_layers)} "
            f"weights + {gb(kv / spec.n_layers)} KV = {gb(per_layer)}; ({gb(vram)} − {gb(overhead)} buffers) / "
            f"{gb(per_layer)} = {max(layers, 0)} layers fit on the GPU"
        )
        if layers >= 1:
            rest = spec.n_layers - layers
            need_ram = rest * per_layer + overhead
            if need_ram <= ram:
                steps.append(
                    f"ctx {n_ctx}: other {rest} layers in RAM: {rest} × {gb(per_layer)} + {gb(overhead)} buffers "
                    f"= {gb(need_ram)} ≤ RAM budget {gb(ram)} → partial offload ({layers}/{spec.n_layers} on GPU)"
                )
                return _Placement("partial", layers, tuple(steps))
            steps.append(f"ctx {n_ctx}: the other {rest} layers need {gb(need_ram)} > RAM budget {gb(ram)}")
    if need_cpu_only <= ram:
        steps.append(f"ctx {n_ctx}: weights + KV + buffers = {gb(need_cpu_only)} ≤ RAM budget {gb(ram)} → CPU only")
        return _Placement("cpu", 0, tuple(steps))
    capacity = ram + (vram - overhead if hardware.gpus and vram > overhead else 0)
    where = f"RAM budget {gb(ram)}"
    if hardware.gpus:
        where += f" + VRAM budget {gb(vram)} − {gb(overhead)} GPU buffers = {gb(capacity)}"
    failure = (
        f"needs {gb(need_cpu_only)} at {n_ctx} ctx (weights {gb(weights)} + KV {gb(kv)} + buffers "
        f"{gb(overhead)}) but the machine offers {where}"
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
            return f"; it would fit at {quant} ({gb(weights_bytes(candidate))} of weights)"
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
        reason = f"{spec.name} fits {place} at {n_ctx} ctx, ~{fast:.1f} tokens/s ({gb(memory.total)} in all)"
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
    kv_bytes_per_element(kv_cache_type)
    if isinstance(spec_or_candidates, ModelSpec):
        return _plan_one(hardware, spec_or_candidates, n_ctx, index_bytes, kv_cache_type)
    candidates = list(spec_or_candidates)
    if not candidates:
        raise ConfigError("No candidate models to plan")
    return recommend(hardware, candidates, index_bytes, n_ctx, kv_cache_type)[0]


#: ``n_gpu_layers`` for "everything": llama.cpp's ``-ngl N`` offloads N repeating layers and keeps the output
#: layer on the CPU unless N exceeds the layer count, while a plan "fully on the GPU" counted all the weights.
ALL_LAYERS = -1


def offload_layers(path: str | os.PathLike[str], n_ctx: int, hardware: Hardware | None = None) -> int:
    """The ``n_gpu_layers`` to load the GGUF at ``path`` with at ``n_ctx``: the plan's placement, not a guess.

    No GPU seen (laptops, CI): 0, and the file is not even read. All on the GPU: :data:`ALL_LAYERS`; partial
    offload: the plan's layer count, the rest in RAM (offloading every layer of a model that does not fit
    in VRAM fails to load); a model that fits nowhere: 0 and a warning with the plan's reason.
    """
    hardware = hardware or detect_hardware()
    if not hardware.gpus:
        return 0
    placed = plan(hardware, ModelSpec.from_gguf(path), n_ctx)
    if placed.where == "gpu":
        return ALL_LAYERS
    if placed.where == "partial":
        return placed.gpu_layers
    if not placed.fits:
        log.warning("%s", placed.reason)
    return 0
