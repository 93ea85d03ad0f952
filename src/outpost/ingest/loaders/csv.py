"""CSV and TSV: one block per data row, rendered ``header: value; header: value``.

A row alone ("3; 4.5; yes") means nothing to a retriever or a reader; pairing each value with
its column name makes every row a self-contained fact. The heading path is the file's stem so a
chunk still says which table it came from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import PurePosixPath

from outpost.ingest.loaders._common import clean, decode_text
from outpost.records import Block

__all__ = ["extract"]

_SNIFF_DELIMITERS = ",;\t|"
_SNIFF_SAMPLE = 64 * 1024


def _dialect(text: str, name: str) -> type[csv.Dialect] | csv.Dialect:
    """Tab for ``.tsv``; otherwise let the sniffer guess (``;`` is common in European exports)."""
    if PurePosixPath(name).suffix.lower() == ".tsv":
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:_SNIFF_SAMPLE], delimiters=_SNIFF_DELIMITERS)
    except csv.Error:  # one column, or too irregular to tell: plain comma CSV
        return csv.excel


def _render(header: list[str], row: list[str]) -> str:
    """``col: value`` pairs, empty values skipped; extra cells beyond the header get ``colN``."""
    names = header + [f"col{i + 1}" for i in range(len(header), len(row))]
    return "; ".join(f"{col}: {clean(v)}" for col, v in zip(names, row) if v.strip())


def _header(row: Iterable[str]) -> list[str]:
    return [clean(cell) or f"col{i + 1}" for i, cell in enumerate(row)]


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """First row is the header; an empty or header-only file yields no blocks."""
    text = decode_text(data, name)
    rows = csv.reader(io.StringIO(text, newline=""), _dialect(text, name))
    header = _header(next(rows, []))
    stem = (PurePosixPath(name).stem,)
    blocks = [Block(text=_render(header, row), headings=stem) for row in rows if any(row)]
    return "", [b for b in blocks if b.text]
