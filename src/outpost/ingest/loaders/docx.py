"""Word ``.docx`` via python-docx: paragraphs and tables in body order.

Heading- and Title-styled paragraphs are structure, not content: they set the heading path
(level from the style name, "Heading 2" → 2, "Title" → 0 so it sits above every heading) rather
than becoming blocks of their own. A table row becomes one "cell | cell | cell" block, so a row
stays a single fact.

This module is ``outpost.ingest.loaders.docx``; ``import docx`` below still means python-docx
because imports are absolute.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.document import Document as WordDocument
from docx.table import Table
from docx.text.paragraph import Paragraph

from outpost.ingest.loaders import fail
from outpost.ingest.loaders._common import HeadingPath, clean
from outpost.ingest.loaders._zip import check_zip
from outpost.records import Block

__all__ = ["extract"]

_LEVEL = re.compile(r"\d+")


def _heading_level(paragraph: Paragraph) -> int | None:
    """0 for "Title", N for "Heading N" (bare "Heading" → 1), None for body text."""
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name.startswith("Title"):
        return 0
    if name.startswith("Heading"):
        digits = _LEVEL.search(name)
        return int(digits.group()) if digits else 1
    return None


def _row_texts(table: Table) -> list[str]:
    """One "cell | cell" line per row; a merged cell repeats in python-docx, so dedupe it."""
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) not in seen:  # the only identity a merged cell has
                seen.add(id(cell._tc))
                cells.append(clean(cell.text))
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def _open(data: bytes, name: str) -> WordDocument:
    """A .docx is a zip; anything else (an old binary .doc renamed) fails with a clear reason.

    The zip is checked for bombs (size, ratio, member count, DTDs: ``_zip.check_zip``) first.
    """
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise fail(name, "not a .docx file (not a zip archive; legacy .doc is not supported)")
    check_zip(data, name)
    return docx.Document(io.BytesIO(data))


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """Title: core properties, else the first Title / Heading 1 text, else ""."""
    document = _open(data, name)
    path, first_heading = HeadingPath(), ""
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks += [Block(text=line, headings=path.path) for line in _row_texts(item)]
            continue
        text, level = clean(item.text), _heading_level(item)
        if level is None and text:
            blocks.append(Block(text=text, headings=path.path))
        elif level is not None and text:
            first_heading = first_heading or (text if level <= 1 else "")
            path.enter(level, text)
    return clean(document.core_properties.title or "") or first_heading, blocks
