"""Shipped query encoders: a fine-tuned embedder as a content-addressed folder that laptops run without torch.

A hub that fine-tunes a collection's embedder gives it a new :class:`EmbeddingIdentity` (DESIGN.md §11) and
ships the encoder that identity needs, as three files in one folder::

    encoder.json     what the encoder is: name, dimension, max sequence length, and each file's sha256 and size
    model.onnx       the exported graph (encoder + mean pooling; ``outpost.embed.onnx_export``), run by ONNX Runtime
    tokenizer.json   the model's own word pieces

The encoder is named by the sha256 of ``encoder.json``; since that file lists the other two by hash, one hash
covers every byte, and it is the identity's ``weights_sha256``. A pack manifest carries it (signed), so a laptop
checks: manifest signature → ``encoder.json`` hash → each file's hash. A laptop keeps encoders in
``$OUTPOST_HOME/encoders/<sha256>/``; the folder appears by one rename only once every file verified, so a folder
that is there is complete, and the identity of a collection says which folder searches it (:func:`encoder_for`).

This module is core (no hub, sync or CLI imports): the hub writes encoders with :func:`write_encoder`, the client
installs them with :func:`install_encoder`, and retrieval and every ingest (local, hub, Ray) load them with
:func:`encoder_for` (cached per sha).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outpost.embed.base import Embedder
from outpost.embed.local_model import LocalModel
from outpost.embed.onnx import OnnxEmbedder
from outpost.errors import PackError
from outpost.fsutil import fsync_dir
from outpost.hashing import sha256_file
from outpost.home import ensure_private_dir
from outpost.names import shown
from outpost.records import EmbeddingIdentity, EncoderRef

__all__ = [
    "ENCODER_FILES",
    "ENCODER_FORMAT",
    "ENCODER_JSON",
    "EncoderSpec",
    "encoder_folder",
    "encoder_for",
    "encoder_identity",
    "encoder_origin",
    "encoders_dir",
    "install_encoder",
    "load_encoder",
    "parse_encoder_json",
    "verify_encoder",
    "write_encoder",
]

ENCODER_FORMAT = 1
ENCODER_JSON = "encoder.json"
GRAPH_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
ENCODER_FILES = (ENCODER_JSON, GRAPH_FILE, TOKENIZER_FILE)
MAX_ENCODER_JSON_BYTES = 1 << 20
MAX_ENCODER_FILE_BYTES = 4 << 30
_SHA256_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class EncoderSpec:
    """What ``encoder.json`` says: enough to build the identity and to verify the other files."""

    name: str
    base: str
    dimension: int
    max_seq_length: int
    normalized: bool
    variant: str
    files: dict[str, tuple[str, int]]  # file → (sha256, bytes), for model.onnx and tokenizer.json
    probe_min_cosine: float


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_CHARS


def encoders_dir(home: Path) -> Path:
    """Where a laptop keeps shipped encoders (``$OUTPOST_HOME/encoders``)."""
    return home / "encoders"


def encoder_identity(spec: EncoderSpec, sha256: str) -> EmbeddingIdentity:
    """The identity of vectors this encoder makes: its own name, and its ``encoder.json`` hash as the weights."""
    return EmbeddingIdentity(spec.name, sha256, spec.dimension, spec.max_seq_length, spec.normalized)


def write_encoder(
    folder: Path,
    *,
    name: str,
    base: str,
    graph: Path,
    tokenizer: Path,
    dimension: int,
    max_seq_length: int,
    variant: str,
    probe_min_cosine: float,
) -> tuple[EncoderRef, EncoderSpec]:
    """Write an encoder folder (copies of ``graph`` and ``tokenizer`` plus ``encoder.json``); returns its ref."""
    ensure_private_dir(folder)
    shutil.copyfile(graph, folder / GRAPH_FILE)
    shutil.copyfile(tokenizer, folder / TOKENIZER_FILE)
    files = {f: {"sha256": sha256_file(folder / f), "bytes": (folder / f).stat().st_size} for f in ENCODER_FILES[1:]}
    body = {
        "format": ENCODER_FORMAT,
        "name": name,
        "base": base,
        "dimension": dimension,
        "max_seq_length": max_seq_length,
        "normalized": True,
        "pooling": "mean",
        "variant": variant,
        "probe_min_cosine": round(float(probe_min_cosine), 6),
        "files": files,
    }
    raw = json.dumps(body, indent=1, sort_keys=True).encode("utf-8")
    (folder / ENCODER_JSON).write_bytes(raw)
    for path in folder.iterdir():
        os.chmod(path, 0o600)
    return EncoderRef(hashlib.sha256(raw).hexdigest(), len(raw)), parse_encoder_json(raw)


def _bad(why: str) -> PackError:
    return PackError(f"The shipped encoder is refused: {why}")


def parse_encoder_json(raw: bytes, sha256: str | None = None) -> EncoderSpec:
    """``encoder.json`` checked: its hash (when ``sha256`` is given), then its shape; ``PackError`` otherwise."""
    if len(raw) > MAX_ENCODER_JSON_BYTES:
        raise _bad(f"encoder.json is over {MAX_ENCODER_JSON_BYTES} bytes")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise _bad("encoder.json does not match the hash its signed pack manifest gives (tampered?)")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad("encoder.json is not JSON") from exc
    if not isinstance(body, dict) or body.get("format") != ENCODER_FORMAT:
        raise _bad(f"unsupported encoder format {shown(body.get('format') if isinstance(body, dict) else body)}")
    return EncoderSpec(
        name=_field(body, "name", str),
        base=_field(body, "base", str),
        dimension=_bounded(_field(body, "dimension", int), "dimension", 1, 65536),
        max_seq_length=_bounded(_field(body, "max_seq_length", int), "max_seq_length", 2, 1 << 16),
        normalized=_field(body, "normalized", bool),
        variant=_field(body, "variant", str),
        files=_files(body.get("files")),
        probe_min_cosine=float(_field(body, "probe_min_cosine", float)),
    )


def _field(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    ok = type(value) is kind or (kind is float and type(value) is int)
    if not ok or (isinstance(value, str) and (len(value) > 256 or not value.isprintable())):
        raise _bad(f"encoder.json {key} is {shown(value)}")
    return value


def _bounded(value: int, key: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise _bad(f"encoder.json {key} is {value}")
    return value


def _files(files: object) -> dict[str, tuple[str, int]]:
    if not isinstance(files, dict) or set(files) != set(ENCODER_FILES[1:]):
        raise _bad(f"encoder.json lists files {shown(files)}, not {', '.join(ENCODER_FILES[1:])}")
    out: dict[str, tuple[str, int]] = {}
    for name, entry in files.items():
        if not isinstance(entry, dict) or set(entry) != {"sha256", "bytes"} or not is_sha256(entry["sha256"]):
            raise _bad(f"encoder.json entry for {name} is {shown(entry)}")
        size = entry["bytes"]
        if type(size) is not int or not 0 < size <= MAX_ENCODER_FILE_BYTES:
            raise _bad(f"encoder.json gives {name} {shown(size)} bytes")
        out[name] = (entry["sha256"], size)
    return out


def verify_encoder(folder: Path, sha256: str) -> EncoderSpec:
    """Every file of the encoder at ``folder`` against ``sha256`` (the signed reference); ``PackError`` if any
    is missing or differs."""
    try:
        raw = (folder / ENCODER_JSON).read_bytes()
    except OSError as exc:
        raise _bad(f"{ENCODER_JSON} is missing ({exc})") from exc
    spec = parse_encoder_json(raw, sha256)
    for name, (digest, size) in spec.files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size or sha256_file(path) != digest:
            raise _bad(f"{name} does not match the hash in encoder.json (tampered or damaged)")
    return spec


def install_encoder(staged: Path, home: Path, sha256: str) -> Path:
    """Verify a downloaded encoder folder and move it into place in one rename (0700 folder, 0600 files).

    Until the rename the encoder does not exist for retrieval; after it, it is complete. A second process that
    installed the same encoder first wins (the same hash means the same bytes), and ``staged`` is dropped.
    """
    if not is_sha256(sha256):
        raise _bad(f"name {shown(sha256)} is not a sha256")
    verify_encoder(staged, sha256)
    root = ensure_private_dir(encoders_dir(home))
    final = root / sha256
    if (final / ENCODER_JSON).is_file():
        shutil.rmtree(staged, ignore_errors=True)
        return final
    for path in staged.iterdir():
        os.chmod(path, 0o600)
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    os.chmod(staged, 0o700)
    try:
        os.replace(staged, final)
    except OSError:
        if not (final / ENCODER_JSON).is_file():
            raise
        shutil.rmtree(staged, ignore_errors=True)
    fsync_dir(root)
    return final


@dataclass(frozen=True)
class _EncoderModel(LocalModel):
    """An encoder folder seen as a :class:`LocalModel` by :class:`OnnxEmbedder` (tokenizer and sequence limit)."""

    seq_length: int = 256

    @property
    def max_seq_length(self) -> int:
        return self.seq_length


def load_encoder(folder: Path, sha256: str, spec: EncoderSpec | None = None, batch_size: int = 16) -> OnnxEmbedder:
    """An embedder running the encoder at ``folder`` (not verified again: it was when it was installed)."""
    spec = spec or parse_encoder_json((folder / ENCODER_JSON).read_bytes(), sha256)
    model = _EncoderModel(folder, spec.name, spec.max_seq_length)
    return OnnxEmbedder(model, folder / GRAPH_FILE, encoder_identity(spec, sha256), batch_size=batch_size)


_LOADED: dict[tuple[str, str], OnnxEmbedder] = {}
_LOCK = threading.Lock()


def encoder_folder(home: Path, identity: EmbeddingIdentity | None) -> Path | None:
    """The folder under ``home/encoders/`` holding the encoder ``identity`` names, if it is there (a folder there
    is complete: it appears by one rename); None for an identity that names none (a model loaded by name).

    ``home`` is a laptop's ``$OUTPOST_HOME`` or a hub's root (``hub/``): both keep encoders in ``encoders/<sha256>/``.
    """
    if identity is None or not is_sha256(identity.weights_sha256):
        return None
    folder = encoders_dir(home) / identity.weights_sha256
    return folder if (folder / ENCODER_JSON).is_file() else None


def encoder_for(home: Path, identity: EmbeddingIdentity | None) -> OnnxEmbedder | None:
    """The installed encoder a collection's identity names, loaded once per process; None when it names none.

    This is the one answer to "which embedder does this collection use": a collection's vectors come from the
    encoder its identity names when ``home`` holds it (retrieval, a laptop's ingest and a hub's ingest, local or on
    Ray, all ask here), else from the settings' model. A collection built with the settings' model (or any
    identity whose weights hash is not an installed encoder) gets None, and the caller uses the settings' embedder;
    ``Store.check_embedding`` then refuses an identity that embedder does not have.
    """
    if identity is None or not is_sha256(identity.weights_sha256):
        return None
    key = (str(encoders_dir(home) / identity.weights_sha256), identity.weights_sha256)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        folder = encoder_folder(home, identity)
        if folder is None:
            return None
        embedder = load_encoder(folder, identity.weights_sha256)
        if embedder.identity != identity:
            return None  # an encoder of that hash that describes other vectors: not this collection's
        _LOADED[key] = embedder
        return embedder


def encoder_origin(embedder: Embedder) -> tuple[Path, str] | None:
    """The folder and sha256 a shipped encoder was loaded from (``load_encoder``, ``encoder_for``), so that another
    process can load the very same one (the Ray stages' workers); None for any other embedder."""
    if isinstance(embedder, OnnxEmbedder) and isinstance(embedder.model, _EncoderModel):
        return embedder.model.folder, embedder.identity.weights_sha256
    return None
