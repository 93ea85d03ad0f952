"""HTTP to a hub: the one client that sync, ``hub://`` model pulls and the dashboard all use.

Everything that talks to a hub goes through :class:`HubClient`, built from the hub's saved config with
:meth:`HubClient.for_hub`, so the pinned private CA (``--hub-ca``) and the no-redirect, bounded-read rules
apply to every caller alike (docs/security.md, "Hub → laptop"):

- **Transport.** TLS certificates are verified (against the system's CAs, or only the pinned private CA);
  redirects are refused, never followed (one could carry the token to another host).
- **Sizes.** A JSON answer is read up to ``MAX_JSON_BYTES``; a download up to the size it was announced with.
  Bodies are read raw (``Accept-Encoding: identity``), so a compressed answer cannot expand past those bounds.
- **Errors.** Every failure becomes an ``OutpostError`` that names the hub.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from outpost.errors import (
    AuthError,
    CollectionNotFoundError,
    ConfigError,
    HubError,
    ModelNotFoundError,
    OutpostError,
    PackError,
)
from outpost.fsutil import commit_file
from outpost.hubs import HubConfig
from outpost.names import shown

__all__ = ["MAX_JSON_BYTES", "HubClient", "tls_verify"]

MAX_JSON_BYTES = 8 * 2**20  # a hub's JSON answer (collection list, sync plan) is far smaller


def tls_verify(ca_pem: str = "") -> ssl.SSLContext | bool:
    """What httpx verifies a hub's certificate with: the system's CAs, or only the pinned private CA."""
    if not ca_pem:
        return True
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"The hub CA is not a PEM certificate ({exc}); pass the CA's .pem file to --hub-ca") from exc


def _ssl_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error at the root of a transport error, if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class HubClient:
    """HTTP to a hub; every failure becomes an ``OutpostError`` with the hub named.

    Nothing is followed or trusted blindly: a redirect is an error, a JSON answer is read up to
    ``MAX_JSON_BYTES``, a download up to the size it was announced with; bodies are read raw
    (``Accept-Encoding: identity``), so a compressed answer cannot expand past those bounds.
    """

    def __init__(self, url: str, token: str, timeout: float = 30.0, ca_pem: str = "") -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            follow_redirects=False,
            verify=tls_verify(ca_pem),
        )

    @classmethod
    def for_hub(cls, hub: HubConfig, timeout: float = 30.0) -> HubClient:
        return cls(hub.url, hub.token, timeout, hub.ca_pem)

    def close(self) -> None:
        self.http.close()

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response with an acceptable status; transport and TLS failures become ``HubError``."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                self._check(response, path)
                yield response
        except httpx.HTTPError as exc:
            failure = _ssl_failure(exc)
            if failure is not None:
                raise HubError(
                    f"The hub at {self.url} failed the TLS check ({failure}). If it uses a private CA, pass that "
                    "CA's certificate with --hub-ca FILE; never sync from a hub whose certificate you cannot verify"
                ) from exc
            if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                raise HubError(f"Cannot reach the hub at {self.url}: {exc}") from exc
            raise HubError(
                f"The connection to the hub at {self.url} was cut ({exc}); run `outpost sync` again to resume"
            ) from exc

    def _check(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if 300 <= status < 400:
            location = shown(response.headers.get("location", ""))
            raise HubError(
                f"The hub at {self.url} answered {path} with a redirect (HTTP {status} to {location}); Outpost never "
                "follows redirects, which could carry the token elsewhere. Use the hub's final address with --hub"
            )
        if status == 401:
            raise AuthError(f"The hub at {self.url} refused the token (missing, wrong or revoked)")
        if status == 404:
            raise _not_found(self.url, path)
        if status >= 400:
            detail = _read_some(response, 4096).decode("utf-8", "replace")
            raise HubError(f"The hub at {self.url} answered {status}: {shown(detail, 200)}")
        if status not in (200, 206):
            raise HubError(f"The hub at {self.url} answered {path} with unexpected HTTP {status}")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._stream(method, path, **kwargs) as response:
            body = _read_capped(response, MAX_JSON_BYTES, path)
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise HubError(f"The hub at {self.url} answered {path} with something that is not JSON") from exc

    def get(self, path: str, **params: Any) -> Any:
        return self._json("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._json("POST", path, json=body)

    def download(self, path: str, dest: Path, size: int, on_bytes: Callable[[int], None] | None = None) -> None:
        """Fetch ``path`` into ``dest``: exactly ``size`` bytes, resuming a ``dest.part`` an earlier try left.

        A hub that sends more than ``size`` is cut off there and the partial file removed; one that sends
        less leaves the ``.part`` for the next try to resume with a ``Range`` request.
        """
        if dest.is_file() and dest.stat().st_size == size:
            if on_bytes:
                on_bytes(size)
            return
        part = dest.with_name(dest.name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        if have >= size:
            part.unlink(missing_ok=True)
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._stream("GET", path, headers=headers) as response:
            if response.status_code == 206:
                _check_resumed_at(response, have, path)
            else:
                have = 0
            if on_bytes and have:
                on_bytes(have)
            try:
                _receive(response, part, have, size, on_bytes)
            except PackError:
                part.unlink(missing_ok=True)
                raise
        if part.stat().st_size != size:
            raise HubError(f"Download of {path} is incomplete; run `outpost sync` again to resume")
        commit_file(part, dest)


def _not_found(url: str, path: str) -> OutpostError:
    """A 404 said as what is missing: ``/v1/models/NAME…`` a model, ``/v1/collections/NAME`` a collection.

    A pack file that vanished mid-sync is the hub changing under us (pruned, republished), not a missing name.
    """
    parts = path.split("?")[0].split("/")  # "", "v1", kind, name, ...
    kind, name = (parts[2], parts[3]) if len(parts) > 3 else ("", "")
    if kind == "models":
        return ModelNotFoundError(
            f"The hub at {url} has no model named {shown(name)} that this token may pull: "
            "check the name with the hub's admin, or `outpost models list` for the local ones"
        )
    if kind == "collections" and "/packs/" not in path and "/encoders/" not in path:
        return CollectionNotFoundError(name)
    return HubError(f"The hub at {url} answered 404 for {path}: run `outpost sync` again later")  # our own path


def _read_capped(response: httpx.Response, limit: int, path: str) -> bytes:
    """The raw body, refused (and not read further) once it passes ``limit`` bytes."""
    parts, size = [], 0
    for block in response.iter_raw():
        size += len(block)
        if size > limit:
            raise HubError(f"The hub's answer to {path} is larger than {limit} bytes: refusing it")
        parts.append(block)
    return b"".join(parts)


def _read_some(response: httpx.Response, limit: int) -> bytes:
    """At most the first ``limit`` bytes of the raw body (an error's detail; the rest is never read)."""
    parts, size = [], 0
    for block in response.iter_raw():
        parts.append(block[: limit - size])
        size += len(parts[-1])
        if size >= limit:
            break
    return b"".join(parts)


def _check_resumed_at(response: httpx.Response, have: int, path: str) -> None:
    """A 206 must continue exactly where the ``.part`` file ends."""
    span = response.headers.get("content-range", "")
    if not re.fullmatch(rf"bytes {have}-[0-9]+/([0-9]+|\*)", span):
        raise HubError(f"The hub resumed {path} at {shown(span)}, not at byte {have}: run `outpost sync` again")


def _receive(
    response: httpx.Response, part: Path, have: int, size: int, on_bytes: Callable[[int], None] | None
) -> None:
    """Append the body to ``part``, never past ``size`` bytes in all (``PackError`` if the hub sends more)."""
    written = have
    with part.open("ab" if have else "wb") as fh:
        for block in response.iter_raw():  # as received: a cut keeps every byte so far
            if written + len(block) > size:
                raise PackError(
                    f"The hub sent more than the {size} bytes it announced for {part.stem}: refusing the pack"
                )
            fh.write(block)
            written += len(block)
            if on_bytes:
                on_bytes(len(block))
