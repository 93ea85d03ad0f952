"""HTML via selectolax (lexbor): the page's own text, without the site's chrome.

A saved web page is mostly navigation, banners, cookie notices and footers repeated on every
page; indexed, they would match every query and drown the article. So boilerplate is pruned
(by tag, ARIA role and class/id tokens), ``<main>`` or a lone ``<article>`` is preferred to the
whole body, and the rest is walked in document order: headings set the heading path, every
block-level element ends a block, and text lying directly in a ``<div>`` is kept.

selectolax 1.0 dropped its Modest backend (``selectolax.parser``); lexbor is the supported one.
"""

from __future__ import annotations

import codecs
import contextlib
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from outpost.ingest.loaders._common import HeadingPath, clean, clean_lines
from outpost.records import Block

__all__ = ["extract"]

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
# HTML's encoding rules: a declared UTF-16/32 in a byte-sniffed page means UTF-8, latin-1 means
# cp1252 (browsers have decoded it that way forever, and authors wrote for browsers)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHARSET_OVERRIDES = {"utf-16": "utf-8", "utf-16-le": "utf-8", "utf-16-be": "utf-8",
                      "utf-32": "utf-8", "latin-1": "cp1252", "iso8859-1": "cp1252",
                      "ascii": "cp1252"}  # fmt: skip

_DROP_TAGS = frozenset(
    {"script", "style", "noscript", "nav", "aside", "form", "iframe", "svg", "template",
     "object", "embed", "canvas", "button", "select", "dialog"}
)  # fmt: skip
# page chrome at page level, but an article's own header holds its title and byline
_CHROME_TAGS = frozenset({"header", "footer"})
_CONTENT_TAGS = frozenset({"html", "body", "main", "article"})  # never pruned
_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "dialog", "alertdialog"})
_DROP_TOKENS = frozenset(
    {"cookie", "cookies", "consent", "gdpr", "sidebar", "menu", "menubar", "breadcrumb",
     "breadcrumbs", "advert", "adverts", "advertisement", "ad", "ads", "adsense", "sponsored",
     "share", "sharing", "social", "footer", "nav", "navbar", "navigation", "banner", "popup",
     "modal", "newsletter", "subscribe", "skip", "toolbar", "pagination"}
)  # fmt: skip
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
     "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "header",
     "hgroup", "hr", "legend", "li", "main", "nav", "ol", "p", "section", "summary", "table",
     "tbody", "tfoot", "thead", "ul"}
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_LAYOUT_IN_CELL = "p, div, table, ul, ol, h1, h2, h3, h4, h5, h6, blockquote, pre"


def _decode(data: bytes) -> str:
    """BOM, else ``<meta charset>`` in the first 4 KiB, else UTF-8; bad bytes become U+FFFD."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    encoding = "utf-8"
    if match := _META_CHARSET.search(data[:4096]):
        with contextlib.suppress(LookupError):
            encoding = codecs.lookup(match.group(1).decode("ascii")).name
    return data.decode(_CHARSET_OVERRIDES.get(encoding, encoding), errors="replace")


def _tokens(value: str | None) -> set[str]:
    """Words of a class/id: "mainMenu nav-bar" → {main, menu, nav, bar}; tokens, not substrings."""
    return set(_NON_WORD.split(_CAMEL.sub(r"\1 \2", value or "").lower())) - {""}


def _is_boilerplate(node: LexborNode, in_content: bool) -> bool:
    tag = node.tag or ""
    if tag in _CONTENT_TAGS:
        return False
    if tag in _DROP_TAGS or (tag in _CHROME_TAGS and not in_content):
        return True
    attrs = node.attributes
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true":
        return True
    if (attrs.get("role") or "").strip().lower() in _DROP_ROLES:
        return True
    return bool((_tokens(attrs.get("class")) | _tokens(attrs.get("id"))) & _DROP_TOKENS)


def _prune(root: LexborNode) -> None:
    """Remove boilerplate subtrees and comments (iterative: real pages can nest 1000 deep)."""
    doomed: list[LexborNode] = []
    stack = [(root, False)]
    while stack:
        node, in_content = stack.pop()
        for child in node.iter(include_text=True):
            if child.is_comment_node or (child.is_element_node and _is_boilerplate(child, in_content)):
                doomed.append(child)
            elif child.is_element_node:
                stack.append((child, in_content or child.tag in ("main", "article")))
    for node in doomed:  # never nested in one another: a doomed node's children are not visited
        node.decompose()


def _content_root(tree: LexborHTMLParser) -> LexborNode | None:
    """``<main>`` if any, else a single ``<article>``, else the body."""
    main = tree.css_first("main, [role=main]")
    if main is not None:
        return main
    articles = tree.css("article")
    return articles[0] if len(articles) == 1 else tree.body or tree.root


def _children(node: LexborNode) -> list[LexborNode]:
    return list(node.iter(include_text=True))


def _cells(row: LexborNode) -> list[LexborNode]:
    return [cell for cell in row.iter() if cell.tag in _CELL_TAGS]


class _Walker:
    """Document-order walk; inline text accumulates until the next block boundary."""

    def __init__(self) -> None:
        self.path = HeadingPath()
        self.blocks: list[Block] = []
        self.buffer: list[str] = []

    def flush(self) -> None:
        text = clean("".join(self.buffer))
        self.buffer.clear()
        if text:
            self.blocks.append(Block(text=text, headings=self.path.path))

    def row(self, node: LexborNode) -> list[LexborNode]:
        """Emit a row as "cell | cell"; a layout row (blocks in its cells) is returned to be
        walked like any container instead."""
        cells = _cells(node)
        if any(cell.css_first(_LAYOUT_IN_CELL) is not None for cell in cells):
            return _children(node)
        texts = [clean(cell.text(deep=True, separator=" ")) for cell in cells]
        if any(texts):
            self.blocks.append(Block(text=" | ".join(texts), headings=self.path.path))
        return []

    def element(self, node: LexborNode) -> list[LexborNode | None]:
        """Handle one element; return what to visit next (``None`` marks a block's end)."""
        tag = node.tag or ""
        if tag in _HEADINGS:
            self.flush()
            self.path.enter(_HEADINGS[tag], clean(node.text(deep=True, separator=" ")))
        elif tag == "pre":
            self.flush()
            text = clean_lines(node.text(deep=True))
            if text.strip():
                self.blocks.append(Block(text=text, headings=self.path.path))
        elif tag == "tr":
            self.flush()
            return [*self.row(node), None]
        elif tag == "br":
            self.buffer.append(" ")
        elif tag in _BLOCK_TAGS:
            self.flush()
            return [*_children(node), None]
        else:  # inline: its text joins the current block
            return list(_children(node))
        return []

    def walk(self, root: LexborNode) -> None:
        """Document order with an explicit stack (no recursion limit on deep pages)."""
        stack: list[LexborNode | None] = [None, *reversed(_children(root))]
        while stack:
            node = stack.pop()
            if node is None:
                self.flush()
            elif node.is_text_node:
                self.buffer.append(node.text_content or "")
            elif node.is_element_node:
                stack.extend(reversed(self.element(node)))


def _title(tree: LexborHTMLParser) -> str:
    for selector in ("head title", "title", "h1"):
        node = tree.css_first(selector)
        if node is not None and (text := clean(node.text(deep=True, separator=" "))):
            return text
    return ""


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """Title: ``<title>``, else the first ``<h1>``, else ""."""
    tree = LexborHTMLParser(_decode(data))
    if tree.root is not None:
        _prune(tree.root)
    root = _content_root(tree)
    walker = _Walker()
    if root is not None:
        walker.walk(root)
    return _title(tree), walker.blocks
