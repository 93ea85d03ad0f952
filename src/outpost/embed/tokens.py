"""The model's own word pieces through the Rust ``tokenizers`` library: counts for the chunker, padded batches for
the fast backends.

One place for both, so the ONNX and GPU backends feed the model exactly what sentence-transformers would: the same
``tokenizer.json``, truncated at the model's ``max_seq_length`` (special tokens included), padded to the longest
text of the batch (batches are length-sorted upstream, so that is little padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["Batch", "WordPieces"]


@dataclass(frozen=True)
class Batch:
    """One padded batch as int64 arrays ``(n, longest)``, the inputs a BERT-style encoder takes."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def word_pieces(self) -> int:
        """Real (unpadded) word pieces, special tokens included: the throughput unit of the benchmarks."""
        return int(self.attention_mask.sum())


class WordPieces:
    """A ``tokenizer.json`` loaded twice: once plain (counting), once truncating and padding (model input)."""

    def __init__(self, tokenizer_file: Path, max_seq_length: int) -> None:
        from tokenizers import Tokenizer

        self._plain: Tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._plain.no_truncation()
        self._plain.no_padding()
        self._model: Tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._model.enable_truncation(max_length=max_seq_length)
        self._model.no_padding()  # padded below in numpy: one allocation, int64 straight away

    def count(self, texts: list[str]) -> list[int]:
        """Word pieces per text without special tokens (what the chunker bounds)."""
        return [len(e.ids) for e in self._plain.encode_batch(texts, add_special_tokens=False)] if texts else []

    def encode(self, texts: list[str]) -> Batch:
        """Truncated, padded model inputs; ``encode_batch`` spreads the texts over Rust threads."""
        return _pad(self._model.encode_batch([t.strip() for t in texts]))  # as sentence-transformers does


def _pad(encodings: list[Encoding]) -> Batch:
    longest = max((len(e.ids) for e in encodings), default=0)
    ids = np.zeros((len(encodings), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
        types[row, :n] = enc.type_ids
    return Batch(ids, mask, types)
