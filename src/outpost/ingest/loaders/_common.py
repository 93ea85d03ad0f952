"""Helpers shared by several loaders: text decoding, whitespace clean-up, the heading path.

They live here so each loader module stays a thin adapter over its parser and no two loaders
carry their own copy of the same rule (two copies drift, and then the same text chunks
differently depending on which format it arrived in).
"""

from __future__ import annotations

import codecs
import re

from outpost.ingest.loaders import fail

__all__ = [
    "HeadingPath",
    "clean",
    "clean_lines",
    "decode_text",
    "dehyphenate",
    "looks_binary",
    "split_paragraphs",
]

_SPACE_RUN = re.compile(r"\s+")
_HSPACE_RUN = re.compile(r"[^\S\n]+")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# a word broken at a line end: "exam-\nple"; only joined when the tail starts lowercase, so
# "Jean-\nPaul" and list dashes survive
_HYPHEN_BREAK = re.compile(r"(\w)-[^\S\n]*\n[^\S\n]*([a-z])")
# C0 controls and DEL, less whitespace and ESC (colour codes in logs are still text)
_CONTROL_BYTES = bytes(b for b in [*range(32), 127] if b not in b"\t\n\r\f\v\x1b")


def clean(text: str) -> str:
    """Collapse every whitespace run (newlines included) to one space: a block is one flow."""
    return _SPACE_RUN.sub(" ", text).strip()


def clean_lines(text: str) -> str:
    """Collapse spaces within lines but keep the line breaks (code, preformatted text)."""
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(lines).strip("\n")


def dehyphenate(text: str) -> str:
    """Rejoin words that a layout engine hyphenated at a line end ("exam-\\nple" → "example")."""
    return _HYPHEN_BREAK.sub(r"\1\2", text)


def split_paragraphs(text: str, *, keep_lines: bool = False) -> list[str]:
    """Split on blank lines; each paragraph is cleaned, empty ones dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    tidy = clean_lines if keep_lines else clean
    parts = (tidy(part) for part in _BLANK_LINE.split(text))
    return [part for part in parts if part.strip()]


def looks_binary(data: bytes) -> bool:
    """Guess whether bytes are not text: real text has no NULs and few control characters.

    Thresholds: more than 1% NUL bytes, or more than 5% control bytes (random or
    compressed data has about 11%), judged on the first 64 KiB.
    """
    sample = data[:65536]
    if not sample:
        return False
    nuls = sample.count(0)
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return nuls / len(sample) > 0.01 or controls / len(sample) > 0.05


def decode_text(data: bytes, name: str) -> str:
    """Decode a text file whose encoding nobody declared.

    UTF-16 only with a BOM (without one it is indistinguishable from binary); then UTF-8 (a BOM
    is dropped); then cp1252, the likeliest legacy encoding, and latin-1, which never fails.
    Binary content raises rather than turning into mojibake that would pollute the index.
    """
    return _decode(data, name).replace("\x00", "")  # a stray NUL breaks SQLite/FTS text


def _decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if looks_binary(data):
        raise fail(name, "binary file, not text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


class HeadingPath:
    """The stack of section titles above the current position, outermost first.

    ``enter(level, title)`` drops every open section at that level or deeper, so an ``h2`` under
    an ``h1`` nests while a new ``h1`` starts over; skipped levels (h1 → h3) simply nest.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        if title:
            self._stack.append((level, title))

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._stack)
