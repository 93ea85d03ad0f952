"""Retrieval-augmented answering: hits → numbered sources → a prompt packed to the context → answer.

The sources an answer lists are exactly the chunks placed in the prompt, numbered as the model
saw them; when the prompt does not fit, the lowest-ranked chunks are dropped first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from outpost.errors import ContextOverflowError
from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.records import Answer, Hit, Source

__all__ = ["AnswerStream", "SYSTEM_PROMPT", "build_messages", "cited_numbers", "pack_sources"]

SYSTEM_PROMPT = (
    "You are a careful assistant for an organisation's internal documents. Answer the question "
    "using only the numbered sources. Cite every fact with its source number in square brackets, "
    "like [1]. If the sources do not contain the answer, say that you don't know. Be concise."
)
_CITATION = re.compile(r"\[(\d+)\]")


def to_sources(hits: list[Hit]) -> list[Source]:
    return [
        Source(i, h.chunk.doc_key, h.chunk.id, h.score, h.chunk.text, h.chunk.page, h.chunk.heading)
        for i, h in enumerate(hits, start=1)
    ]


def _source_block(source: Source) -> str:
    where = source.document + (f", page {source.page}" if source.page is not None else "")
    heading = f" — {source.heading}" if source.heading else ""
    return f"[{source.number}] ({where}{heading})\n{source.text}"


def build_messages(question: str, sources: list[Source], system: str = SYSTEM_PROMPT) -> list[Message]:
    context = "\n\n".join(_source_block(s) for s in sources) or "(no sources found)"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Sources:\n\n{context}\n\nQuestion: {question}"},
    ]


def pack_sources(
    model: ChatModel, question: str, sources: list[Source], max_tokens: int, system: str = SYSTEM_PROMPT
) -> tuple[list[Message], list[Source]]:
    """Drop the lowest-ranked sources until prompt + answer budget fit the context window."""
    kept = list(sources)
    while True:
        messages = build_messages(question, kept, system)
        used = model.prompt_tokens(messages)
        if used + max_tokens <= model.n_ctx:
            return messages, kept
        if not kept:
            raise ContextOverflowError(
                f"The question alone takes {used} of {model.n_ctx} context tokens with {max_tokens} "
                "reserved for the answer; shorten it, lower --max-tokens or raise --ctx"
            )
        kept.pop()


def cited_numbers(text: str, count: int) -> list[int]:
    """Source numbers the answer cites, in first-cited order, ignoring out-of-range numbers."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= count:
            seen.setdefault(number, None)
    return list(seen)


@dataclass
class AnswerStream:
    """Iterate for text pieces as they are generated; ``answer`` is complete once exhausted."""

    model: ChatModel
    question: str
    messages: list[Message]
    sources: list[Source]
    params: GenerationParams
    collection: str = ""
    answer: Answer | None = None
    id: str = ""

    def __iter__(self) -> Iterator[str]:
        pieces: list[str] = []
        for piece in self.model.stream(self.messages, self.params):
            pieces.append(piece)
            yield piece
        text = "".join(pieces).strip()
        self.answer = Answer(
            question=self.question,
            text=text,
            sources=self.sources,
            model=self.model.name,
            collection=self.collection,
            cited=cited_numbers(text, len(self.sources)),
            usage={"prompt_tokens": self.model.prompt_tokens(self.messages), "completion_pieces": len(pieces)},
            id=self.id,
        )

    def result(self) -> Answer:
        """Run to the end (if not yet) and return the answer."""
        if self.answer is None:
            for _ in self:
                pass
        assert self.answer is not None
        return self.answer
