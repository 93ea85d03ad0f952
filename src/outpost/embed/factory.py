"""Pick an embedder backend from a name: ``KIND:MODEL`` asks a plugin's backend, any other name the default.

Backends are the ``outpost.embedders`` entry-point group (``outpost.plugins``); sentence-transformers, the
default, registers there like a plugin. A backend is a factory ``(model, settings) -> Embedder``, called once
per name, device and batch size in a process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from outpost.embed.base import Embedder
from outpost.embed.select import choose_embedder
from outpost.errors import ConfigError
from outpost.plugins import Group, factory_entries
from outpost.settings import Settings

__all__ = ["DEFAULT_KIND", "EMBEDDERS", "load_embedder", "register_builtins", "sentence_transformers"]

EmbedderFactory = Callable[[str, Settings], Embedder]
DEFAULT_KIND = "sentence-transformers"

_CACHE: dict[tuple[str, str | None, int, str], Embedder] = {}
# One embedder per key even when many threads ask first at once (`outpost serve`'s request threads): without it
# each built its own, and each its own ONNX Runtime session (~120 MB): 16 API clients took the server from
# 115 MB to 2.5 GB before the first answer (docs/reliability.md, fix 12).
_LOCK = threading.RLock()  # re-entrant: a plugin backend may build on another embedder


def sentence_transformers(model: str, settings: Settings) -> Embedder:
    """The built-in backend: a sentence-transformers name or folder (bundled models never go online), run by the
    fastest runtime whose vectors match on this machine (``settings.embed_backend``, ``outpost.embed.select``)."""
    return choose_embedder(
        model,
        settings.embed_backend,
        settings.device,
        settings.embed_batch_size,
        settings.embed_cache or settings.home / "models" / "onnx",
        st_cache_dir=settings.cache_dir / "models",
    )


def register_builtins(register: Callable[..., None]) -> None:
    """The built-in backends, registered like any plugin's (``outpost.embedders`` entry point)."""
    register(DEFAULT_KIND, sentence_transformers)


EMBEDDERS: Group[EmbedderFactory] = Group("outpost.embedders", "embedder backend", factory_entries, register_builtins)


def load_embedder(settings: Settings, name: str | None = None) -> Embedder:
    """The embedder for ``name`` (default: the settings'), shared within a process."""
    name = name or settings.embed_model
    key = (name, settings.device, settings.embed_batch_size, settings.embed_backend)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(name, settings)
        return _CACHE[key]


def _build(name: str, settings: Settings) -> Embedder:
    factory, model = EMBEDDERS.choose(name, DEFAULT_KIND)
    embedder = factory(model, settings)
    if not isinstance(embedder, Embedder):
        raise ConfigError(
            f"The embedder backend for {name!r} returned {type(embedder).__name__}, not an outpost Embedder: "
            "the plugin is broken; choose another with --embed-model"
        )
    return embedder
