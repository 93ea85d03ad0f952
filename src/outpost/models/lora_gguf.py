"""Write a LoRA adapter as a GGUF file llama.cpp loads (``lora_path=``, a Modelfile's ``ADAPTER``).

Follows llama.cpp's ``convert_lora_to_gguf.py`` and what ``llama_adapter_lora_init`` checks:

- metadata ``general.type = "adapter"``, ``general.architecture`` equal to the base model's (else
  llama.cpp refuses it), ``adapter.type = "lora"`` and ``adapter.lora.alpha`` (llama.cpp scales by
  ``alpha / rank``, exactly as PEFT does without rsLoRA);
- per adapted matrix, two tensors named after the base tensor: ``blk.N.attn_q.weight.lora_a`` with
  PEFT's ``lora_A`` as is (rank × in) and ``...lora_b`` with ``lora_B`` (out × rank). GGUF lists
  dimensions in reverse, so llama.cpp sees a: ne=[in, rank], b: ne=[rank, out] — the shapes it checks;
- llama.cpp's HF converter permutes the rows of llama's ``attn_q`` / ``attn_k`` weights (its rotary
  layout differs from Hugging Face's), and Transformers undoes that when it loads a GGUF. A LoRA
  delta ``B @ A`` on those weights must be permuted the same way: rows live in ``B``, so ``B``'s rows
  are permuted (this is what ``LoraTorchTensor`` does inside llama.cpp's converter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outpost.errors import ConfigError

__all__ = ["LoraWeights", "permute_rows", "write_lora_gguf"]

_PERMUTED = {"attn_q": "n_head", "attn_k": "n_head_kv"}  # llama-family tensors whose rows llama.cpp permutes
_PERMUTING_ARCHS = {"llama"}


@dataclass(frozen=True)
class LoraWeights:
    """One adapted matrix, in PEFT's orientation: ``delta W = (alpha / rank) · b @ a``."""

    a: np.ndarray  # rank × in
    b: np.ndarray  # out × rank


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute``: per head, interleave the two rotary halves of the rows."""
    rows = weights.shape[0]
    if rows % (2 * n_head):
        raise ConfigError(f"{rows} rows do not split into {n_head} heads of two rotary halves")
    halves = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    permuted: np.ndarray = halves.swapaxes(1, 2).reshape(weights.shape)
    return permuted


def _gguf_name(hf_module: str, arch: str, blocks: int) -> str:
    """``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q.weight`` (gguf's own name map)."""
    import gguf

    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise ConfigError(f"gguf does not know the architecture {arch!r}")
    name = gguf.get_tensor_name_map(arch_id, blocks).get_name(hf_module)
    if name is None:
        raise ConfigError(f"No GGUF tensor for {hf_module!r} in a {arch} model")
    return name + ".weight"


def write_lora_gguf(
    path: Path,
    weights: Mapping[str, LoraWeights],
    *,
    alpha: float,
    arch: str,
    blocks: int,
    n_head: int,
    n_head_kv: int,
    name: str = "",
) -> Path:
    """Write ``weights`` (keyed by Hugging Face module name) as a llama.cpp LoRA GGUF at ``path``."""
    import gguf

    if not weights:
        raise ConfigError("A LoRA adapter needs at least one adapted matrix")
    heads = {"n_head": n_head, "n_head_kv": n_head_kv}
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    if name:
        writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for module in sorted(weights):
        w = weights[module]
        tensor = _gguf_name(module, arch, blocks)
        b = w.b
        kind = tensor.split(".")[2]
        if arch in _PERMUTING_ARCHS and kind in _PERMUTED:
            b = permute_rows(b, heads[_PERMUTED[kind]])
        writer.add_tensor(tensor + ".lora_a", np.ascontiguousarray(w.a, dtype=np.float32))
        writer.add_tensor(tensor + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
