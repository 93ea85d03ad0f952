"""Per-collection storage: SQLite (documents, chunks, int8 vectors, FTS5) and the derived ANN index."""

from outpost.store.ann import AnnIndex, exact_search
from outpost.store.collections import Collections
from outpost.store.sqlite import Store, check_collection_name, fts_query

__all__ = ["AnnIndex", "Collections", "Store", "check_collection_name", "exact_search", "fts_query"]
