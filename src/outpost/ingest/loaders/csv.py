"""CSV and TSV: one block per data row, rendered ``header: value; header: value``.

A row alone ("3; 4.5; yes") means nothing to a retriever or a reader; pairing each value with
its column name makes every row a self-contained fact. The heading path is the file's stem so a
chunk still says which table it came from.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
from collections import Counter
from collections.abc import Iterable
from pathlib import PurePosixPath

from outpost.ingest.loaders._common import clean, decode_text
from outpost.records import Block

__all__ = ["extract"]

_SNIFF_DELIMITERS = ",;\t|"
_SNIFF_SAMPLE = 64 * 1024
_SNIFF_ROWS = 50


def _widths(sample: str, delimiter: str) -> list[int]:
    """Column counts of the sample's first non-empty rows when split on ``delimiter``."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    widths: list[int] = []
    with contextlib.suppress(csv.Error):  # a field over the size limit: judge on the rows before it
        widths.extend(len(row) for row in itertools.islice(reader, _SNIFF_ROWS) if row)
    return widths


def _delimiter(text: str, name: str) -> str:
    """Tab for ``.tsv``; otherwise the candidate that splits the most sample rows into the same
    number (> 1) of columns, ``,`` when none does (``;`` is common in European exports).

    Not ``csv.Sniffer``: its quote-guessing regex is quadratic (64 KB of ``,"`` took 18 s).
    This is one linear ``csv.reader`` pass per candidate over at most 50 rows.
    """
    if PurePosixPath(name).suffix.lower() == ".tsv":
        return "\t"
    sample = text[:_SNIFF_SAMPLE]
    if len(text) > _SNIFF_SAMPLE and "\n" in sample:
        sample = sample[: sample.rfind("\n") + 1]  # no half row at the cut
    best, best_score = ",", (0, 0)
    for delimiter in _SNIFF_DELIMITERS:
        widths = _widths(sample, delimiter)
        width, count = Counter(widths).most_common(1)[0] if widths else (0, 0)
        score = (count, width) if width > 1 else (0, 0)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _render(header: list[str], row: list[str]) -> str:
    """``col: value`` pairs, empty values skipped; extra cells beyond the header get ``colN``."""
    names = header + [f"col{i + 1}" for i in range(len(header), len(row))]
    return "; ".join(f"{col}: {clean(v)}" for col, v in zip(names, row) if v.strip())


def _header(row: Iterable[str]) -> list[str]:
    return [clean(cell) or f"col{i + 1}" for i, cell in enumerate(row)]


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """First row is the header; an empty or header-only file yields no blocks."""
    text = decode_text(data, name)
    rows = csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=_delimiter(text, name))
    header = _header(next(rows, []))
    stem = (PurePosixPath(name).stem,)
    blocks = [Block(text=_render(header, row), headings=stem) for row in rows if any(row)]
    return "", [b for b in blocks if b.text]
