"""The operator's dashboard: server-rendered pages and plain ES modules, served by ``outpost serve``.

Everything it needs (templates, CSS, JS, icons as inline SVG) ships in this package: no CDN, no
web fonts, no telemetry. ``install(app)`` adds its routes to the one ASGI app that also serves ``/v1``
and ``/api`` (over that app's ``ApiService``); see ``routes`` for the pages and ``security`` for CSRF
and the key cookie.
"""

from __future__ import annotations

from fastapi import FastAPI

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount the dashboard's static files and routes on ``app``, whose ``state.service`` they answer through."""
    from outpost.dashboard.routes import Dashboard, mount_static, router

    app.state.dashboard = Dashboard(app.state.service)
    mount_static(app)
    app.include_router(router)
