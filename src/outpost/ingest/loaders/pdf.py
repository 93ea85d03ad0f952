"""PDF via pypdfium2 (PDFium, BSD/Apache), pypdf as the fallback: blocks carry their 1-based page number so
answers can cite "p. 7".

PDFium extracts the same text several times faster than pypdf (``benchmarks/embed.py --parts pdf``); a file
it cannot open (or an install without it) goes to pypdf, whose ``strict=False`` repairs other defects. Both
run inside the parse worker (``ingest/isolation.py``): a time budget, an address-space ceiling, and a crash of
the C library costs one worker restart, not the ingest.

Extracted PDF text is laid-out lines, not paragraphs: lines are joined, words hyphenated at a
line end are rejoined, and space runs collapse. A page splits into paragraphs where the
extractor left blank lines; otherwise the page is one block (the chunker cuts it further).
pypdf's ``strict=False`` lets it repair the small defects real-world PDFs are full of; what it cannot
repair raises, and the registry reports it against the file.
"""

from __future__ import annotations

import io

from pypdf import PasswordType, PdfReader
from pypdf.errors import PyPdfError

from outpost.ingest.loaders import fail
from outpost.ingest.loaders._common import dehyphenate, split_paragraphs
from outpost.records import Block

__all__ = ["ENGINES", "extract", "extract_with"]

ENGINES = ("pypdfium2", "pypdf")


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


def _pypdf(data: bytes, name: str) -> tuple[str, list[str]]:
    reader = _open(data, name)
    return _title(reader), [page.extract_text() or "" for page in reader.pages]


def _pdfium(data: bytes, name: str) -> tuple[str, list[str]]:
    """Title and page texts through PDFium (the empty password opens print-restricted files)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data, password="")
    try:
        title = str(document.get_metadata_dict().get("Title") or "").strip()
        pages = []
        for index in range(len(document)):
            page = document.get_page(index)
            try:
                text = page.get_textpage().get_text_range()
            finally:
                page.close()
            pages.append(_pdfium_text(text))
        return title, pages
    finally:
        document.close()


def _pdfium_text(text: str) -> str:
    """PDFium's line ends as ``\n``; its marker for a word hyphenated at a line end (U+FFFE, or U+0002 in older
    builds, with the line break already removed) dropped, so the word is whole, as ``dehyphenate`` makes pypdf's."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "").replace("\x02", "")


def extract_with(engine: str, data: bytes, name: str) -> tuple[str, list[Block]]:
    """``(title, blocks)`` through one engine (``ENGINES``); the benchmark compares them."""
    title, pages = _pdfium(data, name) if engine == "pypdfium2" else _pypdf(data, name)
    blocks = [
        Block(text=paragraph, page=number)
        for number, text in enumerate(pages, start=1)
        for paragraph in split_paragraphs(dehyphenate(text))
    ]
    return title, blocks


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    try:
        return extract_with("pypdfium2", data, name)
    except Exception:  # not installed, or PDFium refused the file (damage, a password): pypdf may still read it
        pass
    return extract_with("pypdf", data, name)
