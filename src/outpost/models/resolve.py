"""Name → the GGUF file to load, and the Modelfile overlay of a derived model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outpost.llm.bundled import ALIASES, resolve_gguf
from outpost.models.modelfile import Modelfile, parse_modelfile
from outpost.models.registry import Registry

__all__ = ["ResolvedModel", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    modelfile: Modelfile | None = None
    base_name: str = ""


def resolve_model(home: Path, name: str) -> ResolvedModel:
    """A ``.gguf`` path is used as is; any other name comes from the registry (bundled ones included)."""
    if name.lower().endswith(".gguf"):
        path = resolve_gguf(name)
        return ResolvedModel(path.stem, path, None, path.stem)
    entry = Registry(home).get(ALIASES.get(name.lower(), name))
    modelfile = parse_modelfile(entry.modelfile) if entry.modelfile else None
    return ResolvedModel(entry.name, Path(entry.path), modelfile, entry.base or entry.name)
