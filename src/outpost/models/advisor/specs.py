"""Model specs: the few numbers that decide a model's memory and speed, from a GGUF header or from a size.

A model planned by size ("32B at Q4_K_M") is shaped like the nearest typical dense transformer; a known file
is read from its header (:mod:`outpost.models.gguf_header`, shared with the registry) and sized by its bytes.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigError, LoadError
from outpost.models.gguf_header import GGUFHeader, read_gguf_header

__all__ = [
    "DEFAULT_N_CTX_TRAIN",
    "MIN_CTX",
    "QUANT_BITS",
    "QUANT_LADDER",
    "ModelSpec",
    "bits_per_weight",
    "candidate_quants",
    "spec_from_header",
    "spec_from_size",
]

#: Contexts the planner tries: powers of two from MIN_CTX up to the trained context.
MIN_CTX = 2048
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
        """Read the shape from a GGUF header (:func:`~outpost.models.gguf_header.read_gguf_header`; no tensor
        data is read, and a file is parsed once per version).

        Raises ModelNotFoundError for a missing file and LoadError for a file that is not a usable GGUF.
        """
        return spec_from_header(read_gguf_header(path))


def spec_from_header(header: GGUFHeader) -> ModelSpec:
    """The spec of a model whose header is read. Mixture-of-experts files (``expert_used_count`` of
    ``expert_count``) read only their used experts' share of the ``*_exps`` tensors per token."""
    arch = header.architecture or "llama"

    def need(key: str) -> int:
        value = header.integer(f"{arch}.{key}")
        if value is None:
            raise LoadError(header.path, f"GGUF header has no {arch}.{key}; cannot size this model")
        return value

    n_layers, n_embd, n_head = need("block_count"), need("embedding_length"), need("attention.head_count")
    params = float(header.parameters)
    active = None
    expert_count = header.integer(f"{arch}.expert_count") or 0
    expert_used = header.integer(f"{arch}.expert_used_count") or 0
    if expert_count > 1 and 0 < expert_used < expert_count:
        experts = sum(t.n_elements for t in header.tensors if "_exps" in t.name)
        active = params - experts * (1 - expert_used / expert_count)
    return ModelSpec(
        name=header.name or Path(header.path).stem,
        params=params,
        n_layers=n_layers,
        n_ctx_train=header.integer(f"{arch}.context_length") or MIN_CTX,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=header.integer(f"{arch}.attention.head_count_kv") or n_head,
        head_dim=header.integer(f"{arch}.attention.key_length") or None,
        quant=header.quantization,
        file_bytes=header.file_bytes,
        active_params=active,
        architecture=arch,
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
