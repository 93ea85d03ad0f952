"""Error responses in each route family's own shape (DESIGN §9), for handlers and middleware alike.

The exception handlers in ``app.py`` and the browser guard (``guard.py``, which answers before FastAPI
sees the request) both answer through ``error_response``, so a refused request looks like any other error
to the client that made it: OpenAI routes ``{"error": {message, type, param, code}}``, Ollama routes
``{"error": "message"}``, everything else ``{"detail": "message"}``.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["error_body", "error_response", "route_family"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    503: "server_error",
}


def route_family(path: str) -> str:
    """``openai`` for /v1, ``ollama`` for /api, ``other`` for the dashboard, /health and the rest."""
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path == "/api" or path.startswith("/api/"):
        return "ollama"
    return "other"


def error_body(path: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    family = route_family(path)
    if family == "openai":
        kind = _OPENAI_TYPES.get(status, "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    if family == "ollama":
        return {"error": message}
    return {"detail": message}


def error_response(path: str, status: int, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, status, message, code), status_code=status)
