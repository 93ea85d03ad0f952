"""The encoder plus masked mean pooling as one torch module: what the ONNX export traces and the GPU path runs.

One definition, so the two fast backends compute exactly the pooling sentence-transformers' ``Pooling``
(``pooling_mode_mean_tokens``) computes, and only models of that shape reach them
(:meth:`LocalModel.plain_mean_pooling`). Torch is imported inside the function: importing ``outpost.embed``
must stay free of it.
"""

from __future__ import annotations

from typing import Any

from outpost.embed.local_model import LocalModel

__all__ = ["load_pooled_encoder"]


def load_pooled_encoder(model: LocalModel, attention: str = "sdpa", dtype: Any = None) -> Any:
    """``module(input_ids, attention_mask, token_type_ids) -> (n, dim)`` mean-pooled, unnormalised, in eval mode."""
    import torch
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"attn_implementation": attention}
    if dtype is not None:
        kwargs["dtype"] = dtype
    encoder = AutoModel.from_pretrained(str(model.folder), local_files_only=True, **kwargs)

    class MeanPooled(torch.nn.Module):  # type: ignore[misc]  # torch is not analysed (pyproject: follow_imports)
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(1, dtype=torch.float32)  # accumulate fp16/bf16 in fp32
            pooled: torch.Tensor = summed / weights.sum(1, dtype=torch.float32).clamp(min=1e-9)
            return pooled

    return MeanPooled(encoder).eval()
