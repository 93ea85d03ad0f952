"""Structure-aware, token-bounded chunking with overlap.

Why token-bounded by the *embedder's* tokenizer: all-MiniLM-L6-v2 reads at most 256 word pieces and
silently drops the rest, which dense search then never sees. Counting characters or whitespace
words over- or under-shoots; counting with the model's own tokenizer does not.

Why structure-aware: a chunk never spans two sections (heading paths) or two pages, so a source
label like ``handbook.pdf p.3`` is exact, and the heading path is a good prefix for the embedding.

Word-piece counts are additive over whitespace-separated pieces (BERT-style tokenizers split on
whitespace and punctuation first), so pieces are counted once in a batch and packed by summing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from outpost.errors import ConfigError
from outpost.records import Block, Chunk, Document

__all__ = ["Chunker", "chunk_id", "embedding_text", "split_sentences"]

TokenCounter = Callable[[list[str]], list[int]]

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+(?=[\"'(\[]?[A-Z0-9À-Ý])|\n+")
HEADING_SEPARATOR = " › "


def embedding_text(chunk: Chunk) -> str:
    """What the embedder reads: the heading path (title › section) in front of the body text."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


def chunk_id(chunker_id: str, doc_key: str, text: str, occurrence: int = 0) -> str:
    """``sha256(chunker_id ‖ doc key ‖ embedded text)``; repeated text in a document gets an occurrence suffix.

    The embedded text includes the heading path, so a renamed section changes the id and the
    chunk is re-embedded; anything else equal gives the same id on any machine.
    """
    payload = f"{chunker_id}\x00{doc_key}\x00{text}"
    if occurrence:
        payload += f"\x00{occurrence}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def split_sentences(text: str) -> list[str]:
    """Split on sentence ends and line breaks; cheap and language-tolerant, never drops text."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def heading_path(title: str, headings: tuple[str, ...]) -> str:
    """``Title › Section › Subsection``, skipping empty parts and a heading that repeats its parent."""
    parts: list[str] = []
    for part in (title, *headings):
        if part and (not parts or parts[-1].casefold() != part.casefold()):
            parts.append(part)
    return HEADING_SEPARATOR.join(parts)


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int


@dataclass(frozen=True)
class _Section:
    page: int | None
    headings: tuple[str, ...]
    blocks: tuple[Block, ...]


def _sections(blocks: Sequence[Block]) -> list[_Section]:
    """Group consecutive blocks sharing page and heading path."""
    sections: list[_Section] = []
    for block in blocks:
        if sections and (sections[-1].page, sections[-1].headings) == (block.page, block.headings):
            last = sections[-1]
            sections[-1] = _Section(last.page, last.headings, last.blocks + (block,))
        else:
            sections.append(_Section(block.page, block.headings, (block,)))
    return sections


class Chunker:
    """Packs a document's blocks into chunks of at most ``max_tokens`` word pieces.

    Example::

        chunker = Chunker(embedder.count_tokens, max_tokens=200, overlap=30, tokenizer_name="all-MiniLM-L6-v2")
        chunks = chunker.chunk_batch(documents)
    """

    version = 1

    def __init__(
        self,
        count_tokens: TokenCounter,
        max_tokens: int = 200,
        overlap: int = 30,
        tokenizer_name: str = "",
    ) -> None:
        if overlap >= max_tokens // 2:  # a setting the user chose: said in its own words, as a ConfigError
            raise ConfigError(
                f"chunk_overlap ({overlap}) must be under half the chunk size ({max_tokens} word pieces): lower "
                "chunk_overlap (config.toml or OUTPOST_CHUNK_OVERLAP) or raise chunk_tokens"
            )
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.id = f"outpost-structural-v{self.version}:{tokenizer_name}:{max_tokens}:{overlap}"

    def chunk_batch(self, documents: Iterable[Document]) -> list[Chunk]:
        """Pure batch stage: documents → chunks (ids depend only on chunker, key and text)."""
        return [chunk for doc in documents for chunk in self.chunk(doc)]

    def chunk(self, document: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        seen: dict[str, int] = {}
        for section in _sections(document.blocks):
            heading = heading_path(document.title, section.headings)
            for text, tokens in self._pack(section, self._budget(heading)):
                embedded = f"{heading}\n{text}" if heading else text
                occurrence = seen.get(embedded, 0)
                seen[embedded] = occurrence + 1
                chunks.append(
                    Chunk(
                        id=chunk_id(self.id, document.key, embedded, occurrence),
                        doc_key=document.key,
                        ordinal=len(chunks),
                        text=text,
                        page=section.page,
                        heading=heading,
                        token_count=tokens,
                    )
                )
        return chunks

    def _budget(self, heading: str) -> int:
        """Tokens left for body text once the heading prefix (embedded with it) is counted."""
        heading_tokens = self.count_tokens([heading])[0] if heading else 0
        return max(self.max_tokens - heading_tokens, self.max_tokens // 2)

    def _pieces(self, section: _Section, budget: int) -> list[_Piece]:
        """Sentences of the section, each within budget (long ones cut at word boundaries)."""
        sentences = [s for block in section.blocks for s in split_sentences(block.text)]
        counts = self.count_tokens(sentences) if sentences else []
        pieces: list[_Piece] = []
        for sentence, count in zip(sentences, counts):
            if count <= budget:
                pieces.append(_Piece(sentence, count))
            else:
                pieces.extend(self._cut_words(sentence, budget))
        return pieces

    def _cut_words(self, sentence: str, budget: int) -> list[_Piece]:
        words = sentence.split()
        counts = self.count_tokens(words)
        pieces: list[_Piece] = []
        start, total = 0, 0
        for i, count in enumerate(counts):
            if total + count > budget and i > start:
                pieces.append(_Piece(" ".join(words[start:i]), total))
                start, total = i, 0
            total += min(count, budget)
        pieces.append(_Piece(" ".join(words[start:]), total))
        return pieces

    def _pack(self, section: _Section, budget: int) -> list[tuple[str, int]]:
        """Greedy packing; each new chunk starts with the previous one's last ~``overlap`` tokens."""
        out: list[tuple[str, int]] = []
        current: list[_Piece] = []
        total = 0
        for piece in self._pieces(section, budget):
            if current and total + piece.tokens > budget:
                out.append((" ".join(p.text for p in current), total))
                current = self._tail(current, budget - piece.tokens)
                total = sum(p.tokens for p in current)
            current.append(piece)
            total += piece.tokens
        if current:
            out.append((" ".join(p.text for p in current), total))
        return out

    def _tail(self, pieces: list[_Piece], room: int) -> list[_Piece]:
        """The trailing pieces worth at most ``overlap`` tokens (and fitting ``room``)."""
        tail: list[_Piece] = []
        total = 0
        for piece in reversed(pieces):
            if total + piece.tokens > min(self.overlap, room):
                break
            tail.insert(0, piece)
            total += piece.tokens
        return tail
