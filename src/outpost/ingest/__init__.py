"""Ingest stages: discover files, load them, chunk them, embed the chunks, apply one changeset."""

from outpost.ingest.chunker import Chunker, chunk_id, embedding_text
from outpost.ingest.discover import SourceFile, discover
from outpost.ingest.limits import ReadLimits
from outpost.ingest.pipeline import IngestReport, embed_chunks, ingest, read_batch

__all__ = [
    "Chunker",
    "IngestReport",
    "ReadLimits",
    "SourceFile",
    "chunk_id",
    "discover",
    "embed_chunks",
    "embedding_text",
    "ingest",
    "read_batch",
]
