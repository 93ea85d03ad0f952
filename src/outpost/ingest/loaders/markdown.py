"""Markdown: headings become the heading path, every other block its plain text.

markdown-it-py gives a token stream, so structure comes from the parser rather than from
regexes: ``#``/``##`` nest, a new ``#`` resets, and a ``#`` inside a code fence is just code.
Inline markup is stripped (links keep their text, emphasis goes, inline code keeps its
content) because the index wants words, not syntax. YAML front matter is not body text, but its
``title:`` is the best title the file can offer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

from outpost.ingest.loaders._common import HeadingPath, clean, clean_lines, decode_text
from outpost.records import Block

__all__ = ["extract"]

# Linear on any input: one anchored start, and the lazy body stops at the first closing line
# (a ``[ \t]*`` run is only tried after a ``\n---``/``\n...``, so each run is scanned once).
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")
_COMMENT_END, _TAG_END = "-->", ">"
_INLINE_TEXT_TYPES = frozenset({"text", "code_inline", "image"})  # image: its alt text
_CELL_OPENERS = frozenset({"th_open", "td_open"})


def _front_matter_title(front: str) -> str:
    """The first ``title:`` line's value, unquoted.

    A line scan, not ``^title:[ \t]*(.+?)[ \t]*$``: that pattern retries the trailing-space run
    from every position of a long line ("title: x" + 32 KB of spaces + "y" took 2 s).
    """
    for line in front.split("\n"):
        if line.startswith("title:"):
            value = line[len("title:") :].strip(" \t\r")
            if value:
                return value.strip("'\"").strip()
    return ""


def _split_front_matter(text: str) -> tuple[str, str]:
    """(front-matter title or "", body without the front matter)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return "", text
    return _front_matter_title(match.group(1)), text[match.end() :]


def _sub_closed(pattern: re.Pattern[str], closer: str, text: str) -> str:
    """``pattern.sub(" ", text)`` in linear time, for a pattern that ends with ``closer``.

    ``<!--.*?-->`` and ``<[^>]+>`` scan to the end of the text from every opener that has no
    closer after it, which is quadratic ("<!--" * 8000 took 0.9 s, "<" * 32 KB 0.4 s). Past the
    last closer no match can start, so only the text up to it is searched; before it every
    attempt ends at the next closer, and what it scans is consumed by the match.
    """
    end = text.rfind(closer)
    if end < 0:
        return text
    end += len(closer)
    return pattern.sub(" ", text[:end]) + text[end:]


def strip_html(text: str) -> str:
    """The text of a raw HTML block: comments and tags become spaces."""
    return clean(_sub_closed(_HTML_TAG, _TAG_END, _sub_closed(_HTML_COMMENT, _COMMENT_END, text)))


def _inline_text(token: Token) -> str:
    """Plain text of an ``inline`` token: text, code and image alt text; markup dropped."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in _INLINE_TEXT_TYPES:
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return clean("".join(parts))


class _Walker:
    """One pass over the token stream, collecting blocks under the current heading path."""

    def __init__(self) -> None:
        self.path = HeadingPath()
        self.blocks: list[Block] = []
        self.first_h1 = ""
        self.row: list[str] | None = None

    def emit(self, text: str) -> None:
        if text.strip():
            self.blocks.append(Block(text=text, headings=self.path.path))

    def heading(self, open_token: Token, inline: Token) -> None:
        level, text = int(open_token.tag[1:]), _inline_text(inline)
        if level == 1 and not self.first_h1:
            self.first_h1 = text
        self.path.enter(level, text)

    def inline(self, previous: Token, token: Token) -> None:
        """Paragraph text (list items and quotes hold paragraphs too) or a table cell."""
        if previous.type == "paragraph_open":
            self.emit(_inline_text(token))
        elif previous.type in _CELL_OPENERS and self.row is not None:
            self.row.append(_inline_text(token))

    def walk(self, tokens: Sequence[Token]) -> None:
        for index, token in enumerate(tokens):
            previous = tokens[index - 1] if index else token
            if token.type == "inline" and previous.type == "heading_open":
                self.heading(previous, token)
            elif token.type == "inline":
                self.inline(previous, token)
            elif token.type in ("fence", "code_block"):
                self.emit(clean_lines(token.content))
            elif token.type == "html_block":
                self.emit(strip_html(token.content))
            elif token.type == "tr_open":
                self.row = []
            elif token.type == "tr_close" and self.row:
                self.emit(" | ".join(self.row) if any(self.row) else "")
                self.row = None


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """Title: front matter ``title:``, else the first ``#`` heading, else ""."""
    title, body = _split_front_matter(decode_text(data, name))
    walker = _Walker()
    walker.walk(MarkdownIt("commonmark").enable("table").parse(body))
    return title or walker.first_h1, walker.blocks
