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

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")
_INLINE_TEXT_TYPES = frozenset({"text", "code_inline", "image"})  # image: its alt text
_CELL_OPENERS = frozenset({"th_open", "td_open"})


def _split_front_matter(text: str) -> tuple[str, str]:
    """(front-matter title or "", body without the front matter)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return "", text
    found = _FRONT_MATTER_TITLE.search(match.group(1))
    title = found.group(1).strip().strip("'\"").strip() if found else ""
    return title, text[match.end() :]


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
                self.emit(clean(_HTML_TAG.sub(" ", _HTML_COMMENT.sub(" ", token.content))))
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
