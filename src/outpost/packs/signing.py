"""Ed25519 keys for signing pack manifests: the hub signs, clients verify against a pinned key.

Public keys travel as text, ``ed25519:<base64 of the 32 raw bytes>``, short enough to paste into
``outpost sync --hub-key``. Private keys are written with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from outpost.errors import PackError
from outpost.home import ensure_private_dir

__all__ = [
    "PREFIX",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "parse_public_key",
    "public_key_text",
    "sign",
    "verify",
]

PREFIX = "ed25519:"


def generate_key(path: Path) -> Ed25519PrivateKey:
    """Create a signing key at ``path`` (0600); refuses to overwrite an existing key."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    body = text.strip().removeprefix(PREFIX)
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(body, validate=True))
    except ValueError as exc:
        raise PackError(f"Not an Ed25519 public key: {text!r} (expected {PREFIX}<base64>)") from exc


def fingerprint(text: str) -> str:
    """``SHA256:`` and the sha256 of the raw public key in groups of four hex digits: what a person compares
    between the hub (``outpost hub serve`` prints it) and the laptop (first sync prints it)."""
    raw = parse_public_key(text).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(raw).hexdigest()
    return "SHA256:" + " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """Signature as base64 text bytes (a file a person can look at)."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(public_key_text_: str, data: bytes, signature: bytes) -> None:
    """Raise ``PackError`` unless ``signature`` is the hub key's signature of exactly ``data``."""
    key = parse_public_key(public_key_text_)
    try:
        key.verify(base64.b64decode(signature.strip(), validate=True), data)
    except (InvalidSignature, ValueError) as exc:
        raise PackError("Pack signature is invalid: the manifest was not signed by the pinned hub key") from exc
