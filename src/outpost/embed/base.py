"""The embedder interface: a backend implements ``_encode``; batching and checks live here once.

Batches are cut from the texts sorted by word pieces (the model's own tokenizer counts them, in Rust, in well
under 1% of the model's time), longest first, and the vectors put back in input order.
Cut in input order, one long chunk pads 63 short ones to its length and the model computes all that padding
(attention is quadratic in it): on NFCorpus, sorting is what sentence-transformers does inside one call and what
made the other stacks faster than Outpost at the same model (``benchmarks/embed.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from outpost.errors import ConfigError
from outpost.records import EmbeddingIdentity

__all__ = ["Embedder", "length_batches"]

ProgressCallback = Callable[[int], None]


def length_batches(texts: Sequence[str], batch_size: int, lengths: Sequence[int] | None = None) -> Iterator[np.ndarray]:
    """Index arrays of ``texts``, longest first, ``batch_size`` at a time; ties keep input order (deterministic).

    ``lengths`` should be word pieces: character length is a poor proxy on real text (NFCorpus chunks sorted by
    characters still pad 22% of what the model computes, by word pieces under 1%: ``benchmarks/embed.py``).
    """
    if lengths is None:
        lengths = [len(t) for t in texts]
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class Embedder(abc.ABC):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Subclasses provide ``identity`` (what makes vectors comparable), ``count_tokens`` (the model's
    own word-piece counts, used by the chunker) and ``_encode`` (one batch); a backend that pipelines
    batches itself (the GPU path) overrides ``_encode_all`` instead.
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
        """Embed ``texts`` in length-sorted batches; returns normalised float32 ``(n, dim)`` in input order."""
        dim = self.identity.dimension
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        out = np.empty((len(texts), dim), dtype=np.float32)
        for index, vectors in self._encode_all(texts):
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape != (len(index), dim):
                raise ConfigError(  # a broken backend (a plugin's, say): not the documents' fault
                    f"The embedder {self.identity.name!r} returned vectors of shape {vectors.shape}, not "
                    f"{(len(index), dim)}: it is broken; choose another with --embed-model"
                )
            out[index] = vectors
            if progress:
                progress(len(index))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def _encode_all(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(indices into texts, their vectors)`` per batch, in any order; the base fills the output by index."""
        for index in length_batches(texts, self.batch_size, self.count_tokens(list(texts))):
            yield index, self._encode([texts[i] for i in index])

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed([text])[0]
        return vector
