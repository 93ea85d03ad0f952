"""The local API server: OpenAI- and Ollama-compatible routes over the same service, and the dashboard.

Built by ``create_app(settings)``, never at import. Binds to 127.0.0.1 by default (``outpost serve``);
an optional API key guards every route but ``/health``. Each route family keeps its own error shape.
The routes are module-level routers (here, ``openai_routes``, ``ollama_routes``, ``dashboard.routes``);
the one ``ApiService`` they share lives on ``app.state.service`` (``api.deps``).
"""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from outpost import __version__
from outpost.api import ollama_routes, openai_routes
from outpost.api.deps import Service
from outpost.api.errors import error_response
from outpost.api.guard import install_guard
from outpost.api.service import ApiService
from outpost.dashboard import install as install_dashboard
from outpost.dashboard.routes import render_ask
from outpost.dashboard.security import gate, is_dashboard_path, wants_html
from outpost.errors import OutpostError
from outpost.settings import Settings

__all__ = ["create_app", "router"]

router = APIRouter()


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.api_route("/", methods=["GET", "HEAD"], response_model=None)
def root(request: Request, service: Service) -> dict[str, str] | HTMLResponse:
    if wants_html(request):  # a browser: the dashboard's Ask page
        return render_ask(request, service)
    return {"status": "Outpost is running", "version": __version__}  # Ollama clients probe "/" for JSON


def _error(request: Request, status: int, message: str, code: str | None = None) -> JSONResponse:
    return error_response(request.url.path, status, message, code)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "The request body is not valid JSON"
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in errors]
    return 422, "Invalid request: " + "; ".join(parts)


async def _outpost_error(request: Request, exc: OutpostError) -> JSONResponse:
    return _error(request, exc.http_status, str(exc), type(exc).__name__)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    status, message = _validation_message(exc)
    return _error(request, status, message)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(request, exc.status_code, str(exc.detail))


async def _api_key(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """With ``api_key`` set, every route but ``/health`` needs it (the dashboard also takes its key cookie)."""
    key = request.app.state.service.settings.api_key
    if key and is_dashboard_path(request):
        refused = gate(request, key)
        return refused if refused is not None else await call_next(request)
    if key and request.url.path != "/health":
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given, key):
            return _error(request, 401, "Missing or wrong API key", "invalid_api_key")
    return await call_next(request)


async def _reap_idle(service: ApiService) -> None:
    """Unload models once idle for ``keep_alive`` seconds, checking at most every 5 s."""
    while True:
        await asyncio.sleep(min(5.0, max(service.settings.keep_alive, 0.5)))
        service.unload_if_idle()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """For as long as the app runs, its service's idle models are unloaded."""
    task = asyncio.create_task(_reap_idle(app.state.service))
    yield
    task.cancel()


def create_app(settings: Settings) -> FastAPI:
    service = ApiService(settings)
    app = FastAPI(title="Outpost local API", version=__version__, lifespan=_lifespan)
    app.state.service = service
    app.middleware("http")(_api_key)
    app.exception_handler(OutpostError)(_outpost_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.include_router(router)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.router)
    install_dashboard(app)
    install_guard(app, settings)  # added last, so it runs first: before the API key check and every route
    return app
