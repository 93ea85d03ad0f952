"""Outpost: private, offline-first question answering over your own documents.

The public surface is small and pinned by a test::

    from outpost import Outpost
    op = Outpost()
    op.ingest("docs/", collection="handbook")
    answer = op.ask("How many vacation days do new hires get?", collection="handbook")
"""

from outpost.app import Outpost
from outpost.errors import OutpostError
from outpost.records import Answer, Chunk, CollectionInfo, Document, Hit, Source
from outpost.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Chunk",
    "CollectionInfo",
    "Document",
    "Hit",
    "Outpost",
    "OutpostError",
    "Settings",
    "Source",
    "__version__",
]
