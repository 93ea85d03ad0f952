"""Plain records that every Outpost module speaks.

This module sits at the bottom of the package: it imports nothing else of Outpost, so the ingest
stages, the store, retrieval, packs and the servers can all exchange these values without import
cycles. Records are dataclasses, cheap to build and easy to serialise (``dataclasses.asdict``).

Data flows one way through them::

    Path ─load→ Document(blocks) ─chunk→ Chunk ─embed→ (int8 vector, scale) ─→ Changeset ─apply→ Store
    query ─retrieve→ Hit ─prompt→ Source ─LLM→ Answer
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Adapter",
    "Answer",
    "Block",
    "Changeset",
    "Chunk",
    "Claim",
    "CollectionInfo",
    "Document",
    "DocumentRecord",
    "EmbeddingIdentity",
    "EncoderRef",
    "Evidence",
    "Hit",
    "Revectors",
    "Source",
]


@dataclass(frozen=True)
class Block:
    """A structural unit of a loaded file: a paragraph, a table row, a page's text.

    ``headings`` is the path of section titles above the block (outermost first), so the chunker
    can keep a section together and prefix a chunk with where it came from.
    """

    text: str
    page: int | None = None
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    """A file as loaded: its identity (key + content hash) and its text as ordered blocks.

    ``key`` is the path relative to the ingest root in POSIX form: never absolute, since the hub's
    paths mean nothing on a laptop.
    """

    key: str
    sha256: str
    title: str
    kind: str
    blocks: tuple[Block, ...]
    size: int = 0


@dataclass(frozen=True)
class DocumentRecord:
    """What the store keeps of a document once its text lives in chunks."""

    key: str
    sha256: str
    title: str
    kind: str
    size: int
    chunk_count: int


@dataclass(frozen=True)
class Chunk:
    """A token-bounded piece of a document, the unit of retrieval.

    ``id`` is ``sha256(chunker_id ‖ document key ‖ text)[:32]``: stable across runs and machines.
    """

    id: str
    doc_key: str
    ordinal: int
    text: str
    page: int | None = None
    heading: str = ""
    token_count: int = 0


@dataclass(frozen=True)
class EmbeddingIdentity:
    """What makes two vectors comparable: same model weights, dimension and normalisation."""

    name: str
    weights_sha256: str
    dimension: int
    max_seq_length: int
    normalized: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EmbeddingIdentity:
        return cls(**json.loads(text))

    def short(self) -> str:
        return f"{self.name} (dim {self.dimension}, weights {self.weights_sha256[:12]})"


@dataclass(frozen=True)
class Adapter:
    """A query-side linear map learned on the hub from feedback: ``q' = normalise(matrix @ q)``.

    Document vectors never change, so a new adapter travels as one small matrix in the next pack.
    """

    version: int
    matrix: np.ndarray  # float32 (dim, dim)

    def apply(self, query: np.ndarray) -> np.ndarray:
        out = np.asarray(query, dtype=np.float32) @ self.matrix.T
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        unit: np.ndarray = out / np.where(norms > 0, norms, 1.0)
        return unit

    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(np.ascontiguousarray(self.matrix, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class EncoderRef:
    """The query encoder a collection's identity needs, named by the sha256 of its ``encoder.json`` (which lists
    the graph's and tokenizer's hashes): a pack's signed manifest carries it, so the signature covers the encoder."""

    sha256: str
    bytes: int


@dataclass
class Revectors:
    """New vectors for chunks a collection already holds: how a collection switches embedder in one version.

    Applied together with the changeset's new ``embedding``; every chunk of the collection must end up either
    re-vectored here or upserted by the same changeset, so no vector of the old identity survives the switch.
    Only ids, int8 vectors and scales travel (~400 bytes a chunk with MiniLM), never the text again.
    """

    ids: list[str]
    vectors: np.ndarray  # int8 (len(ids), dim)
    scales: np.ndarray  # float32 (len(ids),)


@dataclass
class Changeset:
    """The only way to change a collection: applied by ``Store.apply`` in one transaction.

    ``vectors`` is an ``(len(upserts), dim)`` int8 array and ``scales`` its float32 per-row scales,
    aligned with ``upserts``. A local ingest, a hub ingest and a sync all end here.
    """

    collection: str
    base_version: int
    upserts: list[Chunk] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int8))
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    documents: list[DocumentRecord] = field(default_factory=list)
    delete_chunks: list[str] = field(default_factory=list)
    delete_documents: list[str] = field(default_factory=list)
    embedding: EmbeddingIdentity | None = None
    chunker_id: str = ""
    version: int = 0
    snapshot: bool = False
    adapter: Adapter | None = None
    revectors: Revectors | None = None  # a new embedder: every chunk's vector replaced (with ``embedding``)
    encoder: EncoderRef | None = None  # the query encoder ``embedding`` names, when it is a shipped one

    def __post_init__(self) -> None:
        # A local change moves one version forward; a pack names its target version explicitly.
        if not self.version:
            self.version = self.base_version + 1

    def is_empty(self) -> bool:
        changes = (self.upserts, self.documents, self.delete_chunks, self.delete_documents)
        return not any(changes) and self.adapter is None and self.revectors is None


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the rank it had in each retriever (1-based)."""

    chunk: Chunk
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None


@dataclass(frozen=True)
class Evidence:
    """A sentence of source ``[source]`` that supports an answer, with its support score (higher is better)."""

    source: int
    text: str
    score: float


@dataclass(frozen=True)
class Claim:
    """One sentence of a generated answer, checked against the sources it cites (all of them if none).

    ``supported`` is the verdict; ``reason`` says why in one plain sentence ("Source [1] does not mention
    “2”."); ``evidence`` is the source sentence that came closest, shown beside the claim.
    """

    text: str
    supported: bool
    score: float
    reason: str
    sources: tuple[int, ...] = ()
    evidence: Evidence | None = None


@dataclass(frozen=True)
class Source:
    """A chunk placed in the prompt, numbered as the model saw it (``[n]``).

    ``evidence`` holds this source's sentences among the answer's best evidence (filled after generation).
    """

    number: int
    document: str
    chunk_id: str
    score: float
    text: str
    page: int | None = None
    heading: str = ""
    evidence: tuple[Evidence, ...] = ()

    def label(self) -> str:
        page = f" p.{self.page}" if self.page is not None else ""
        return f"[{self.number}] {self.document}{page}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the HTTP APIs' ``sources[]``): evidence as ``[{"source", "text", "score"}]``."""
        return asdict(self)


@dataclass
class Answer:
    """An answer with the sources that were in its prompt, its evidence and its grounding check.

    What a caller (CLI, Python API, HTTP APIs, dashboard) shows, all filled by ``Outpost.ask`` after
    generation, streamed or not:

    - ``text``: what to show as the answer. Normally the model's reply; when the grounding check found no
      supported sentence, a plain notice followed by the best evidence (the reply stays in ``generated``);
      in extractive mode (``outpost ask --extractive``, or no chat model could load), the best evidence
      sentences themselves, cited.
    - ``generated``: the model's own reply, verbatim ("" in extractive mode).
    - ``evidence``: the source sentences that best support the answer, best first; each also appears in
      its ``sources[n-1].evidence``.
    - ``claims``: one entry per sentence of the reply: ``supported``, ``score``, ``reason``, closest evidence.
    - ``grounding``: ``supported`` | ``partial`` | ``unsupported`` | ``unchecked`` (check off, or no
      sources) | ``extractive``.
    - ``notice``: why the answer is not the model's own words ("" if it is), e.g. no chat model could load.
    - ``confidence``: the model's geometric-mean probability for the tokens of its reply (0–1), which the
      grounding check reads; ``None`` when its runtime cannot tell (a remote API, a plugin) or no model ran.
    - ``route``: ``local``, ``remote`` or ``fallback`` (local after the remote failed); ``route_reason`` says
      why (``outpost.routing``), e.g. that a private collection's text never leaves.
    """

    question: str
    text: str
    sources: list[Source]
    model: str = ""
    collection: str = ""
    cited: list[int] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    id: str = ""  # the feedback id: vote on this answer with it
    generated: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    grounding: str = "unchecked"
    notice: str = ""
    grounding_ms: float = 0.0
    confidence: float | None = None
    route: str = "local"
    route_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_html_(self) -> str:
        """Notebook view: the answer, then its sources as a numbered list."""
        items = "".join(
            f"<li><b>{html.escape(s.label())}</b> "
            f"<small>score {s.score:.4f}</small><br><small>{html.escape(s.text[:300])}</small></li>"
            for s in self.sources
        )
        return (
            f"<div><p><i>{html.escape(self.question)}</i></p>"
            f"<p>{html.escape(self.text)}</p><ol style='list-style:none;padding-left:0'>{items}</ol></div>"
        )

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CollectionInfo:
    """One row of ``outpost collections``."""

    name: str
    version: int
    documents: int
    chunks: int
    bytes_on_disk: int
    embedding: EmbeddingIdentity | None
    chunker_id: str
