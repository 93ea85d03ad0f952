"""The operator's dashboard: server-rendered pages and plain ES modules, served by ``outpost serve``.

Everything it needs (templates, CSS, JS, icons as inline SVG) ships in this package: no CDN, no
web fonts, no telemetry. ``install(app, service)`` adds its routes to the one ASGI app that also
serves ``/v1`` and ``/api``; see ``routes`` for the pages and ``security`` for CSRF and the key cookie.
"""

from __future__ import annotations

from fastapi import FastAPI

from outpost.api.service import ApiService

__all__ = ["install"]


def install(app: FastAPI, service: ApiService) -> None:
    """Mount the dashboard's static files and routes on ``app``."""
    from outpost.dashboard.routes import dashboard_router, mount_static

    mount_static(app)
    app.include_router(dashboard_router(service))
