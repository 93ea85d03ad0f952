"""The hub: ingest centrally, publish signed packs, serve them to outposts (``outpost hub ...``).

``create_app(settings)`` builds the hub's ASGI app, as ``outpost.api.create_app`` builds the local one.
It is imported on first use, so commands that only manage the hub home (tokens, ingest) do not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outpost.hub.server import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from outpost.hub.server import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
