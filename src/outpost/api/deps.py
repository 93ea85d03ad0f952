"""What the local API's routes (both dialects, the dashboard) receive through FastAPI ``Depends``.

``create_app`` keeps one ``ApiService`` on ``app.state.service``; routes are module-level routers that ask
for it here rather than closing over it, so any number of apps can share the route modules in one process.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from outpost.api.service import ApiService

__all__ = ["Service", "get_service"]


def get_service(request: Request) -> ApiService:
    """The app's one ``ApiService``."""
    return request.app.state.service  # type: ignore[no-any-return]


Service = Annotated[ApiService, Depends(get_service)]
