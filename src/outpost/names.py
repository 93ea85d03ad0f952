"""Names that arrive from outside (a hub, a manifest, an HTTP request) and the one way to join them to paths.

DESIGN §11: a collection, pack, file, model or hub name that came over the network never becomes a path
unchecked. Every such name must match one portable grammar, and is joined to its base folder only through
``safe_join``, which also refuses a result that resolves outside the base (a symlinked folder, say), so a
hostile hub cannot make the client write, rename or delete anything outside the folder it meant to use.
"""

from __future__ import annotations

import re
from pathlib import Path

from outpost.errors import ConfigError

__all__ = ["NAME_PATTERN", "check_name", "is_valid_name", "safe_join", "shown"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def is_valid_name(name: object) -> bool:
    """True for a string in the portable name grammar (no separators, no leading dot, at most 128 chars)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def shown(value: object, limit: int = 80) -> str:
    """``repr`` of a value from outside, cut short, for error messages.

    ``repr`` escapes control characters (a hostile name cannot move the terminal's cursor or hide itself),
    and the cut keeps a 100 kB name from filling the screen.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is in the grammar, else raise ``ConfigError`` naming what it was meant to be."""
    if not is_valid_name(name):
        raise ConfigError(
            f"Invalid {what} {shown(name)}: use letters, digits, '.', '_' or '-' "
            "(at most 128, starting with a letter or digit)"
        )
    return name  # type: ignore[return-value]


def safe_join(base: Path, *names: str, what: str = "name") -> Path:
    """``base / name / …`` for names in the grammar, refused if the result resolves outside ``base``.

    ``resolve()`` follows symlinks that already exist, so a planted link inside ``base`` that points out of it
    is caught here too, before any ``mkdir``, write, rename or delete.
    """
    path = base
    for name in names:
        path = path / check_name(name, what)
    root = base.resolve()
    if not path.resolve().is_relative_to(root):
        raise ConfigError(f"Refused {what} {shown('/'.join(names))}: it would leave {base}")
    return path
