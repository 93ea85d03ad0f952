"""The local API server: OpenAI- and Ollama-compatible routes over the same service.

Built by ``create_app(settings)``, never at import. Binds to 127.0.0.1 by default (``outpost serve``);
an optional API key guards every route but ``/health``. Each route family keeps its own error shape.
"""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from outpost import __version__
from outpost.api.errors import error_response
from outpost.api.guard import install_guard
from outpost.api.ollama_routes import ollama_router
from outpost.api.openai_routes import openai_router
from outpost.api.service import ApiService
from outpost.dashboard import install as install_dashboard
from outpost.dashboard.routes import render_ask
from outpost.dashboard.security import gate, is_dashboard_path, wants_html
from outpost.errors import OutpostError
from outpost.settings import Settings

__all__ = ["create_app"]


def _error(request: Request, status: int, message: str, code: str | None = None) -> JSONResponse:
    return error_response(request.url.path, status, message, code)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "The request body is not valid JSON"
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in errors]
    return 422, "Invalid request: " + "; ".join(parts)


def create_app(settings: Settings) -> FastAPI:
    service = ApiService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def reaper() -> None:  # unload models once idle for keep_alive seconds
            while True:
                await asyncio.sleep(min(5.0, max(settings.keep_alive, 0.5)))
                service.unload_if_idle()

        task = asyncio.create_task(reaper())
        yield
        task.cancel()

    app = FastAPI(title="Outpost local API", version=__version__, lifespan=lifespan)
    app.state.service = service

    @app.middleware("http")
    async def api_key(request: Request, call_next: Any) -> Any:
        if settings.api_key and is_dashboard_path(request):  # the dashboard also takes its key cookie
            refused = gate(request, settings.api_key)
            return refused if refused is not None else await call_next(request)
        if settings.api_key and request.url.path != "/health":
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given, settings.api_key):
                return _error(request, 401, "Missing or wrong API key", "invalid_api_key")
        return await call_next(request)

    @app.exception_handler(OutpostError)
    async def outpost_error(request: Request, exc: OutpostError) -> JSONResponse:
        return _error(request, exc.http_status, str(exc), type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return _error(request, status, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(request, exc.status_code, str(exc.detail))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.api_route("/", methods=["GET", "HEAD"], response_model=None)
    def root(request: Request) -> dict[str, str] | HTMLResponse:
        if wants_html(request):  # a browser: the dashboard's Ask page
            return render_ask(request, service)
        return {"status": "Outpost is running", "version": __version__}  # Ollama clients probe "/" for JSON

    app.include_router(openai_router(service))
    app.include_router(ollama_router(service))
    install_dashboard(app, service)
    install_guard(app, settings)  # added last, so it runs first: before the API key check and every route
    return app
