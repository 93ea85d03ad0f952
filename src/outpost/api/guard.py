"""The browser guard: one ASGI middleware in front of /v1, /api, the dashboard and /health (DESIGN §11).

Any web page the user visits can make the browser send requests to ``127.0.0.1:11434``. Two attacks follow,
and this middleware refuses both before FastAPI, the API key check or any route sees the request:

- **DNS rebinding** (Ollama's CVE-2024-28224): a page at ``http://evil.example:11434`` re-points its own
  name at 127.0.0.1; the browser then treats our server as *that page's own origin* and lets it read every
  answer. The request still carries ``Host: evil.example:11434``, so only Host names that cannot be rebound
  are served: loopback addresses, ``localhost`` and ``*.localhost`` (browsers resolve those to loopback
  themselves), the address ``outpost serve --host`` binds, and names the user configured
  (``allowed_hosts``). A Host-less request (HTTP/1.0, raw sockets) is served: no browser sends one.
- **Cross-site requests (CSRF)**: a page cannot read our answers, but it can still *send* requests — a form
  POST that queues a vote, starts a generation, or anything else with an effect. Every request whose
  ``Origin`` is present and is neither the server's own origin nor a configured ``allowed_origins`` entry is
  refused (``null`` included: sandboxed frames and ``file:`` pages), and so is ``Sec-Fetch-Site:
  cross-site``. State-changing requests to /v1 and /api must say ``Content-Type: application/json``: a page
  can only send that type after a CORS preflight, which nothing here approves (old browsers that send no
  Origin are stopped by this too). curl and the official ``openai``/``ollama`` clients send no Origin and do
  send JSON, so they are unaffected.

Refusals answer 403 (Host, Origin) or 415 (content type) in the route family's own error shape.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from outpost.api.errors import error_response, route_family
from outpost.settings import Settings

__all__ = ["BrowserGuard", "GuardPolicy", "host_name", "install_guard"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost"})
_SINGLE = frozenset({"host", "origin", "content-type", "sec-fetch-site"})


def host_name(host: str) -> str | None:
    """The name or address in a Host header value, lowercased, without port or trailing dot; None if malformed.

    ``[::1]:8080`` → ``::1``; ``LocalHost.:80`` → ``localhost``; ``a b`` → None.
    """
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal, optionally with a port
        end = host.find("]")
        if end < 0 or (host[end + 1 :] and not _is_port(host[end + 1 :].removeprefix(":"))):
            return None
        return host[1:end] if _ip(host[1:end]) else None
    name, sep, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if sep and not _is_port(port):
        return None
    name = name.removesuffix(".")
    if not name or any(not (c.isalnum() or c in "-._") for c in name):
        return None
    return name


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= 65535


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _normal_origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard lets through besides loopback: configured names and origins, and the bound address."""

    hosts: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    any_ip_host: bool = False  # the server binds every interface: a Host that is an IP literal is fine

    @classmethod
    def build(cls, allowed_hosts: Iterable[str], allowed_origins: Iterable[str], bind: str) -> GuardPolicy:
        """The policy for a server bound to ``bind`` (``--host``) with the user's ``allowed_*`` settings.

        A non-loopback bind address is served under its own name (that is why it was bound); binding
        0.0.0.0 or ``::`` lets any IP-literal Host through, since an address cannot be rebound.
        """
        hosts = {h for h in (host_name(x) for x in allowed_hosts) if h}
        bound = host_name(bind) or host_name(f"[{bind}]")
        unspecified = bool(bound and (ip := _ip(bound)) and ip.is_unspecified)
        if bound and not unspecified:
            hosts.add(bound)
        return cls(frozenset(hosts), frozenset(_normal_origin(o) for o in allowed_origins), unspecified)

    def host_allowed(self, header: str | None) -> bool:
        if not header:  # HTTP/1.0 or a raw client: no browser sends a request without a Host
            return True
        name = host_name(header)
        if name is None:
            return False
        ip = _ip(name)
        if ip is not None:
            return ip.is_loopback or self.any_ip_host or name in self.hosts
        return name in _LOOPBACK_NAMES or name.endswith(".localhost") or name in self.hosts

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Same origin as the Host the request was sent to (http or https), or a configured origin."""
        origin = _normal_origin(origin)
        if origin in self.origins:
            return True
        scheme, sep, netloc = origin.partition("://")
        return bool(sep and host and scheme in ("http", "https") and netloc == host.strip().lower())

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """None to serve the request, else (status, message). ``headers``: lowercase names, one value each."""
        host = headers.get("host")
        if not self.host_allowed(host):
            return 403, (
                f"Refused Host {host!r}: this server answers only to loopback names "
                "(add the name to the allowed_hosts setting to serve it)"
            )
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, host):
            return 403, (
                f"Refused a cross-site request from origin {origin!r} "
                "(add it to the allowed_origins setting to let that web page call this server)"
            )
        if headers.get("sec-fetch-site") == "cross-site" and not (origin and self.origin_allowed(origin, host)):
            return 403, "Refused a cross-site request (Sec-Fetch-Site: cross-site)"
        if method in _UNSAFE_METHODS and route_family(path) != "other":
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                return 415, f"{method} {path} needs Content-Type: application/json, not {media or 'none'!r}"
        return None


class BrowserGuard:
    """Pure ASGI middleware applying a ``GuardPolicy`` to every HTTP request and WebSocket handshake."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers, repeated = _headers(scope)
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        refused = self.policy.refusal(method, scope.get("path", ""), headers)
        if repeated & _SINGLE:  # two Host or Origin headers: which one a check reads must not matter
            refused = 403, f"Refused a request with more than one {' or '.join(sorted(repeated & _SINGLE))} header"
        if refused is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
        else:
            status, message = refused
            code = "unsupported_media_type" if status == 415 else "forbidden"
            await error_response(scope.get("path", ""), status, message, code)(scope, receive, send)


def _headers(scope: Scope) -> tuple[dict[str, str], set[str]]:
    """The request's headers by lowercase name, and the names that came more than once."""
    headers: dict[str, str] = {}
    repeated: set[str] = set()
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        if name in headers:
            repeated.add(name)
        headers[name] = raw_value.decode("latin-1")
    return headers, repeated


def install_guard(app: Any, settings: Settings) -> None:
    """Put the guard in front of everything in ``app``; call it last in ``create_app`` (last added runs first).

    Origins the user allowed also get CORS answers (preflights included), so a web app they trust can read
    responses; no other origin gets any.
    """
    from starlette.middleware.cors import CORSMiddleware

    policy = GuardPolicy.build(settings.allowed_hosts, settings.allowed_origins, settings.serve_host)
    if policy.origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=sorted(policy.origins), allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(BrowserGuard, policy=policy)
