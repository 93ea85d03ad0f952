"""Hub tokens: 32 random bytes shown once, stored as sha256, scoped to collections.

A scope is ``(kind, name, right)``. A token sees a collection only with a ``read`` (or ``write``)
scope on it, or as admin; anything out of scope is answered exactly like a collection that does not
exist, so names do not leak. Uploading feedback is its own right (``feedback``): votes steer the
adapter every outpost receives, so a laptop that may read a collection may not vote on it unless
the hub's operator says so.

Tokens live in the hub's metadata database (``metadata.py``: SQLite or PostgreSQL), so every hub process
sharing it accepts the same tokens. Lookups (``authenticate``, ``get``, ``list``) run in a read transaction:
on SQLite they never take the write lock, so a long write elsewhere cannot make a request's token check fail.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from outpost.errors import AuthError, ConfigError, NotFoundError
from outpost.hub.home import HubHome

if TYPE_CHECKING:
    from outpost.hub.metadata import TokenRecord

__all__ = ["TokenInfo", "Tokens"]

PREFIX = "opk_"
RIGHTS = {"read": {"read", "write"}, "write": {"write"}, "feedback": {"feedback"}}  # a right → the scopes that grant it


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    admin: bool
    created_at: str
    revoked_at: str | None
    scopes: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, right)

    def can(self, right: str, name: str, kind: str = "collection") -> bool:
        if self.admin:
            return True
        rights = RIGHTS[right]
        return any(k == kind and n == name and r in rights for k, n, r in self.scopes)


class Tokens:
    def __init__(self, hub: HubHome) -> None:
        self.hub = hub

    def create(
        self,
        name: str,
        read: Sequence[str] = (),
        write: Sequence[str] = (),
        admin: bool = False,
        models: Sequence[str] = (),
        feedback: Sequence[str] = (),
    ) -> tuple[str, TokenInfo]:
        """A new token; the secret is returned once and never stored."""
        if not name:
            raise ConfigError("A token needs a --name")
        secret = PREFIX + secrets.token_urlsafe(32)
        scopes = [("collection", c, "read") for c in read] + [("collection", c, "write") for c in write]
        scopes += [("collection", c, "feedback") for c in feedback] + [("model", m, "read") for m in models]
        token_id = self.hub.metadata().create_token(name, _hash(secret), admin, scopes)
        return secret, self.get(token_id)

    def get(self, token_id: int) -> TokenInfo:
        record = self.hub.metadata().token(token_id)
        if record is None:
            raise NotFoundError(f"No token with id {token_id}: see `outpost hub token list`")
        return _info(record)

    def list(self) -> list[TokenInfo]:
        return [_info(r) for r in self.hub.metadata().tokens()]

    def revoke(self, name_or_id: str) -> builtins.list[TokenInfo]:  # ``list`` is the method above
        """Revoke by id or by name (every live token of that name)."""
        ids = self.hub.metadata().revoke(name_or_id)
        if not ids:
            raise NotFoundError(f"No live token named or numbered {name_or_id!r}: see `outpost hub token list`")
        return [self.get(i) for i in ids]

    def authenticate(self, secret: str | None) -> TokenInfo:
        """The live token for ``secret``; missing, unknown and revoked all fail the same way."""
        record = self.hub.metadata().live_token(_hash(secret)) if secret else None
        if record is None:
            raise AuthError("A valid, unrevoked hub token is required")
        return _info(record)


def _info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(record.id, record.name, record.admin, record.created_at, record.revoked_at, list(record.scopes))
