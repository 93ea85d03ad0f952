"""The embedder interface: a backend implements ``_encode``; batching and checks live here once."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np

from outpost.records import EmbeddingIdentity

__all__ = ["Embedder"]

ProgressCallback = Callable[[int], None]


class Embedder(abc.ABC):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Subclasses provide ``identity`` (what makes vectors comparable), ``count_tokens`` (the model's
    own word-piece counts, used by the chunker) and ``_encode`` (one batch).
    """

    batch_size: int = 64

    @property
    @abc.abstractmethod
    def identity(self) -> EmbeddingIdentity: ...

    @abc.abstractmethod
    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces per text, without special tokens."""

    @abc.abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """One batch → float32 ``(len(texts), dim)``."""

    @property
    def max_tokens(self) -> int:
        """Usable word pieces per text (the model's limit less its special tokens)."""
        return self.identity.max_seq_length - 2

    def embed(self, texts: Sequence[str], progress: ProgressCallback | None = None) -> np.ndarray:
        """Embed ``texts`` in batches; returns normalised float32 ``(n, dim)``."""
        dim = self.identity.dimension
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        out = np.empty((len(texts), dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors = np.asarray(self._encode(batch), dtype=np.float32)
            if vectors.shape != (len(batch), dim):
                raise RuntimeError(f"embedder returned shape {vectors.shape}, want {(len(batch), dim)}")
            out[start : start + len(batch)] = vectors
            if progress:
                progress(len(batch))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
