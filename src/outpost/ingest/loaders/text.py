"""Plain text (``.txt``, ``.text``, ``.rst``): one block per blank-line-separated paragraph.

Line breaks inside a paragraph are kept: in plain text they are often meaningful (lists, verse,
literal blocks in reStructuredText) and the chunker copes with them either way.
"""

from __future__ import annotations

from outpost.ingest.loaders._common import decode_text, split_paragraphs
from outpost.records import Block

__all__ = ["extract"]


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """Decode (see ``decode_text``) and split into paragraphs; plain text has no title."""
    text = decode_text(data, name)
    return "", [Block(text=para) for para in split_paragraphs(text, keep_lines=True)]
