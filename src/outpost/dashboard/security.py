"""The dashboard's own protections, in front of its routes and beside the API's guard.

- **CSRF**: a double-submit token. Every page sets an ``outpost_csrf`` cookie (SameSite=Strict,
  HttpOnly) and prints the same value in ``<meta name="csrf-token">``; each state-changing request
  sends it back in the ``X-Outpost-CSRF`` header. Another site can neither read the page's token
  nor set that header without a CORS preflight, so a forged form post or fetch is refused.
- **API key**: with ``--api-key`` set, the dashboard asks for the key once and keeps a derived
  token (HMAC of the key, never the key itself) in an ``outpost_key`` cookie (SameSite=Strict,
  HttpOnly). ``gate`` lets a dashboard request through with that cookie or a Bearer key; a page
  request without either gets the login page, a dashboard API call gets 401.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "KEY_COOKIE",
    "check_csrf",
    "csrf_token",
    "gate",
    "is_open_path",
    "is_dashboard_path",
    "key_cookie_value",
    "key_ok",
    "key_ok_value",
    "set_cookie",
    "wants_html",
]

CSRF_COOKIE = "outpost_csrf"
CSRF_HEADER = "x-outpost-csrf"
KEY_COOKIE = "outpost_key"
PREFIX = "/ui"
OPEN_PATHS = ("/ui/static/", "/ui/login")  # reachable without the key: the login page needs its CSS


def wants_html(request: Request) -> bool:
    """A browser navigating (``Accept: text/html``) rather than an Ollama client probing ``/`` for JSON."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept.lower()


def is_dashboard_path(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/") or (path == "/" and wants_html(request))


def key_cookie_value(api_key: str) -> str:
    """What the cookie holds: a keyed hash of the API key, so a stolen cookie jar does not reveal the key."""
    return hmac.new(api_key.encode(), b"outpost-dashboard-session", hashlib.sha256).hexdigest()


def key_ok(request: Request, api_key: str) -> bool:
    """The request carries the API key: as the dashboard cookie, or as ``Authorization: Bearer``."""
    cookie = request.cookies.get(KEY_COOKIE, "")
    if cookie and secrets.compare_digest(cookie, key_cookie_value(api_key)):
        return True
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bool(given) and secrets.compare_digest(given, api_key)


def key_ok_value(given: str, api_key: str) -> bool:
    """The login form's key is the server's (constant-time)."""
    return bool(given) and secrets.compare_digest(given.strip(), api_key)


def is_open_path(request: Request) -> bool:
    return request.url.path.startswith(OPEN_PATHS)


def csrf_token(request: Request) -> str:
    """The browser's CSRF token: the one its cookie holds, or a new one on its first page view."""
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if len(token) == 43 else secrets.token_urlsafe(32)  # token_urlsafe(32) has 43 characters


def set_cookie(response: Response, name: str, value: str) -> None:
    """Dashboard cookies: HTTP-only, same-site strict, whole origin."""
    response.set_cookie(name, value, httponly=True, samesite="strict", path="/")


def check_csrf(request: Request) -> None:
    """FastAPI dependency for every state-changing dashboard route: header token == cookie token."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not secrets.compare_digest(cookie, header):
        raise HTTPException(403, "Missing or wrong CSRF token: reload the page and try again")


def gate(request: Request, api_key: str) -> Response | None:
    """The API-key check for dashboard paths: None lets the request through.

    A page without the key redirects to the login page (which asks once and sets the cookie); a
    dashboard API call without it gets 401, like the API routes.
    """
    if is_open_path(request) or key_ok(request, api_key):
        return None
    if request.method in ("GET", "HEAD") and not request.url.path.startswith(PREFIX + "/api/"):
        return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)
    return JSONResponse({"detail": "Missing or wrong API key: log in to the dashboard again"}, status_code=401)
