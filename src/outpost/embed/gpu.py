"""The hub's fast torch path: keep an accelerator busy instead of waiting on the tokenizer.

``SentenceTransformer.encode`` tokenises a batch, copies it, runs it, copies back, then tokenises the next: on an
H100 the model waits most of the time (~1k chunks/s, tokeniser-bound). Here:

- texts are cut into length-sorted batches (:func:`length_batches`: no padding waste), large on CUDA;
- a small thread pool tokenises batches ahead of the model (the Rust tokenizer releases the GIL), and the
  tensors are put in pinned host memory so the copy to the device is asynchronous;
- the model runs in fp16 on CUDA, fp32 on the CPU, under ``inference_mode``;
- results are fetched one batch late, so the device already has the next batch queued while the host copies
  the previous one back and the pool tokenises further ahead.

On the CPU (tests, CI) the same code runs in fp32 and its vectors equal sentence-transformers' (cosine ≥ 0.999
per chunk, ``tests/test_embed_backends.py``), so it keeps the model's :class:`EmbeddingIdentity`.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.base import Embedder, length_batches
from outpost.embed.local_model import LocalModel
from outpost.embed.pooled import load_pooled_encoder
from outpost.embed.tokens import Batch, WordPieces
from outpost.records import EmbeddingIdentity

__all__ = ["TorchFastEmbedder"]

log = logging.getLogger(__name__)

CUDA_BATCH_SIZE = 1024
"""Texts per batch on CUDA: MiniLM at ≤ 256 word pieces needs well under 1 GB of activations at fp16."""


class TorchFastEmbedder(Embedder):
    """Pipelined, length-bucketed, half-precision embedding on CUDA; the same pipeline in fp32 on the CPU."""

    def __init__(
        self,
        model: LocalModel,
        device: str = "cuda",
        batch_size: int | None = None,
        tokenizer_threads: int = 4,
        prefetch: int = 4,
        hash_memo: Path | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.on_cuda = device.startswith("cuda")
        self.batch_size = batch_size or (CUDA_BATCH_SIZE if self.on_cuda else 64)
        self.tokenizer_threads = tokenizer_threads
        self.prefetch = max(1, prefetch)
        self.hash_memo = hash_memo

    @cached_property
    def identity(self) -> EmbeddingIdentity:
        return self.model.identity(self.hash_memo)

    @cached_property
    def pieces(self) -> WordPieces:
        return WordPieces(self.model.tokenizer_file, self.model.max_seq_length)

    @cached_property
    def module(self) -> Any:
        import torch

        dtype = _half_dtype(torch) if self.on_cuda else torch.float32
        module = load_pooled_encoder(self.model, attention="sdpa", dtype=dtype).to(self.device)
        log.info("loaded %s on %s in %s", self.model.name, self.device, dtype)
        return module

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.pieces.count(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._fetch(self._launch(self._host_tensors(texts)))

    def _encode_all(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Tokenise ahead in a thread pool, launch batch *i*, then fetch batch *i − 1* (see the module doc)."""
        # Character lengths here: on a GPU the tokenizer is the bottleneck, and counting word pieces first would
        # tokenise everything twice; big batches absorb the coarser sort.
        batches = length_batches(texts, self.batch_size)
        ahead: collections.deque[tuple[np.ndarray, Future[dict[str, Any]]]] = collections.deque()
        with ThreadPoolExecutor(self.tokenizer_threads, thread_name_prefix="outpost-tokenize") as pool:

            def submit_next() -> None:
                index = next(batches, None)
                if index is not None:
                    ahead.append((index, pool.submit(self._host_tensors, [texts[i] for i in index])))

            for _ in range(self.prefetch):
                submit_next()
            pending: tuple[np.ndarray, Any] | None = None
            while ahead:
                index, future = ahead.popleft()
                submit_next()
                launched = self._launch(future.result())
                if pending is not None:
                    yield pending[0], self._fetch(pending[1])
                pending = (index, launched)
            if pending is not None:
                yield pending[0], self._fetch(pending[1])

    def _host_tensors(self, texts: list[str]) -> dict[str, Any]:
        """Tokenised, padded int64 tensors, pinned when they go to CUDA (runs in the pool's threads)."""
        import torch

        batch: Batch = self.pieces.encode(texts)
        tensors = {
            "ids": torch.from_numpy(batch.input_ids),
            "mask": torch.from_numpy(batch.attention_mask),
            "types": torch.from_numpy(batch.token_type_ids),
        }
        return {k: v.pin_memory() for k, v in tensors.items()} if self.on_cuda else tensors

    def _launch(self, host: dict[str, Any]) -> Any:
        """Queue the copy and the forward pass; on CUDA this returns before the device is done."""
        import torch

        with torch.inference_mode():
            dev = {k: v.to(self.device, non_blocking=True) for k, v in host.items()}
            return self.module(dev["ids"], dev["mask"], dev["types"])

    def _fetch(self, launched: Any) -> np.ndarray:
        """Wait for one batch and bring its float32 vectors to the host."""
        return np.asarray(launched.float().cpu().numpy(), dtype=np.float32)


def _half_dtype(torch: Any) -> Any:
    """fp16: 10 mantissa bits against bf16's 7 keep per-chunk cosine to fp32 above 0.999; MiniLM's activations
    stay far from fp16's range limit."""
    return torch.float16
