"""Name → the GGUF file to load, and the Modelfile overlay of a derived model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigError, ModelNotFoundError
from outpost.llm.bundled import ALIASES, resolve_gguf
from outpost.models.modelfile import Modelfile, parse_modelfile
from outpost.models.registry import Registry, check_model_name

__all__ = ["ResolvedModel", "check_registry_name", "resolve_model"]


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


def check_registry_name(name: str) -> str:
    """``name`` if it can only mean a registered model, never a file: what a model name from HTTP must be.

    ``resolve_model`` loads a ``.gguf`` path as is, which the CLI needs (``--model ./x.gguf``). A web request
    must not: any page that reaches the local API could make the server open files of its choosing, or learn
    which exist from the error. Refused like an unknown model (404), and the message names no path.
    """
    try:
        registry_name = check_model_name(name)
    except ConfigError:
        registry_name = ""
    if not registry_name or registry_name.endswith(".gguf"):
        raise ModelNotFoundError(
            f"No model named {name[:80]!r}: name a registered model (`outpost models list`); "
            "file paths are not accepted over HTTP"
        )
    return registry_name
