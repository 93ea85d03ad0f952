"""PDF via pypdf: blocks carry their 1-based page number so answers can cite "p. 7".

Extracted PDF text is laid-out lines, not paragraphs: lines are joined, words hyphenated at a
line end are rejoined, and space runs collapse. A page splits into paragraphs where the
extractor left blank lines; otherwise the page is one block (the chunker cuts it further).
``strict=False`` lets pypdf repair the small defects real-world PDFs are full of; what it cannot
repair raises, and the registry reports it against the file.
"""

from __future__ import annotations

import io

from pypdf import PasswordType, PdfReader
from pypdf.errors import PyPdfError

from outpost.ingest.loaders import fail
from outpost.ingest.loaders._common import dehyphenate, split_paragraphs
from outpost.records import Block

__all__ = ["extract"]


def _open(data: bytes, name: str) -> PdfReader:
    """Open, decrypting with the empty password (many "protected" PDFs only restrict printing)."""
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            unlocked = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception as exc:  # e.g. AES without the optional crypto dependency
            raise fail(name, f"encrypted PDF cannot be decrypted: {exc}") from exc
        if not unlocked:
            raise fail(name, "encrypted PDF: a password is required")
    return reader


def _title(reader: PdfReader) -> str:
    """The document-info /Title; damaged metadata is not worth failing the file for."""
    try:
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, TypeError, KeyError, AttributeError):
        return ""
    return str(title).strip() if title else ""


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    reader = _open(data, name)
    blocks = [
        Block(text=paragraph, page=number)
        for number, page in enumerate(reader.pages, start=1)
        for paragraph in split_paragraphs(dehyphenate(page.extract_text() or ""))
    ]
    return _title(reader), blocks
