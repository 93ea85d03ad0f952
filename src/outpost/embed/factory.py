"""Pick an embedder backend from a name (one place to add backends)."""

from __future__ import annotations

from outpost.embed.base import Embedder
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.settings import Settings

__all__ = ["load_embedder"]

_CACHE: dict[tuple[str, str | None, int], Embedder] = {}


def load_embedder(settings: Settings, name: str | None = None) -> Embedder:
    """The embedder for ``name`` (default: the settings'), shared within a process."""
    name = name or settings.embed_model
    key = (name, settings.device, settings.embed_batch_size)
    if key not in _CACHE:
        _CACHE[key] = SentenceTransformerEmbedder(
            name,
            device=settings.device,
            batch_size=settings.embed_batch_size,
            cache_dir=settings.cache_dir / "models",
        )
    return _CACHE[key]
