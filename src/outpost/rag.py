"""Retrieval-augmented answering: hits → numbered sources → a prompt packed to the context → answer → grounding.

The sources an answer lists are exactly the chunks placed in the prompt, numbered as the model
saw them; when the prompt does not fit, the lowest-ranked chunks are dropped first. Extractive-first
(the default, ``prompt_sentences`` > 0): the prompt holds only the best evidence sentences of those
chunks, each under its source's number, and the model is asked for a short answer first — on the
bundled 135M–270M models whole chunks mostly distract (docs/benchmarks.md, answers). Once generated,
every answer goes through one step, :func:`ground_answer`: its evidence is found and each of its
sentences checked against the sources (``outpost.evidence``). With no chat model, the answer is the
evidence itself (``AnswerStream(model=None)``).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from outpost.embed.base import Embedder
from outpost.errors import ContextOverflowError
from outpost.evidence import extractive_answer, ground
from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.records import Answer, Evidence, Hit, Source

__all__ = [
    "AnswerStream",
    "SOURCES_PROMPT",
    "SYSTEM_PROMPT",
    "UNSUPPORTED_NOTICE",
    "UNSURE_NOTICE",
    "build_messages",
    "cited_numbers",
    "ground_answer",
    "pack_sources",
]

UNSUPPORTED_NOTICE = "The sources do not support the model's answer; here is what they say."
UNSURE_NOTICE = "The model was unsure of its answer; here is what the sources say."
EXTRACTIVE_MODEL = "extractive"

# Answer first, in a few words: measured on SQuAD dev (docs/benchmarks.md), the bundled models given the
# longer instructions (cite every fact, say when you don't know) restated the question or the whole sentence.
SYSTEM_PROMPT = "Answer the question in a few words, using only the sources."
# Whole sources (``prompt_sentences = 0``, a remote model): the model has several passages to choose from, so it
# is asked to cite them; the answer's citations then mark which sources it used.
SOURCES_PROMPT = (
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


def _evidence_block(sources: list[Source], evidence: list[Evidence]) -> str:
    """The evidence sentences of ``sources``, best first, one line each under its source's number."""
    kept = {s.number for s in sources}
    return "\n".join(f"[{e.source}] {e.text}" for e in evidence if e.source in kept)


def build_messages(
    question: str, sources: list[Source], system: str | None = None, evidence: list[Evidence] | None = None
) -> list[Message]:
    """The chat messages for ``question``: whole sources, or (``evidence`` given) only those sentences.

    ``system`` None: the instructions that suit the prompt's shape (``SYSTEM_PROMPT`` for evidence sentences,
    ``SOURCES_PROMPT`` for whole sources)."""
    system = system or (SYSTEM_PROMPT if evidence is not None else SOURCES_PROMPT)
    if evidence is not None:
        context = _evidence_block(sources, evidence)
    else:
        context = "\n\n".join(_source_block(s) for s in sources)
    context = context or "(no sources found)"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Sources:\n\n{context}\n\nQuestion: {question}"},
    ]


def pack_sources(
    model: ChatModel,
    question: str,
    sources: list[Source],
    max_tokens: int,
    system: str | None = None,
    evidence: list[Evidence] | None = None,
) -> tuple[list[Message], list[Source]]:
    """Drop the lowest-ranked sources until prompt + answer budget fit the context window.

    ``evidence`` (the prompt's sentences, from :func:`outpost.evidence.find_evidence`) puts only those
    sentences in the prompt; the answer still lists the whole sources, those sentences' own first.
    """
    kept = list(sources)
    if evidence is not None:
        kept, evidence = _renumber(kept, evidence)
    while True:
        messages = build_messages(question, kept, system, evidence)
        used = model.prompt_tokens(messages)
        if used + max_tokens <= model.n_ctx:
            return messages, kept
        if not kept:
            raise ContextOverflowError(
                f"The question alone takes {used} of {model.n_ctx} context tokens with {max_tokens} "
                "reserved for the answer; shorten it, lower --max-tokens or raise --ctx"
            )
        kept.pop()


def _renumber(sources: list[Source], evidence: list[Evidence]) -> tuple[list[Source], list[Evidence]]:
    """The sources that the evidence sentences come from first (numbered 1.. in rank order), then the rest,
    and the evidence relabelled to match.

    Why: the prompt then reads ``[1] …`` as with whole chunks, and the answer still lists every retrieved
    source (the reader can check the others, and vote on them: votes on unhelpful sources train the adapter).
    """
    used = {e.source for e in evidence}
    order = [s for s in sources if s.number in used] + [s for s in sources if s.number not in used]
    number = {s.number: i for i, s in enumerate(order, start=1)}
    relabelled = [replace(e, source=number[e.source]) for e in evidence if e.source in number]
    return [replace(s, number=number[s.number]) for s in order], relabelled


def cited_numbers(text: str, count: int) -> list[int]:
    """Source numbers the answer cites, in first-cited order, ignoring out-of-range numbers."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= count:
            seen.setdefault(number, None)
    return list(seen)


def ground_answer(answer: Answer, embedder: Embedder | None, check: bool = True) -> Answer:
    """The evidence-and-grounding step that every answer goes through after generation (DESIGN §11).

    Fills ``evidence``, ``claims``, ``grounding`` and each source's ``evidence`` (in place, so a caller
    holding the sources list sees them). With ``check`` and no supported sentence, ``text`` becomes a plain
    notice and the evidence; the reply stays in ``generated``. No answer text (``model=None``) makes an
    extractive answer. ``embedder`` None (no collection) leaves the answer unchecked.
    """
    if embedder is None:
        return answer
    extractive = answer.model == EXTRACTIVE_MODEL
    checking = check and not extractive
    result = ground(answer.question, answer.generated, answer.sources, embedder, checking, answer.confidence)
    by_source: dict[int, list[Evidence]] = {}
    for item in result.evidence:
        by_source.setdefault(item.source, []).append(item)
    answer.sources[:] = [replace(s, evidence=tuple(by_source.get(s.number, ()))) for s in answer.sources]
    answer.evidence, answer.claims, answer.grounding_ms = result.evidence, result.claims, result.ms
    answer.grounding = "extractive" if extractive else result.status
    if extractive:
        answer.text = extractive_answer(result.evidence)
        answer.cited = cited_numbers(answer.text, len(answer.sources))
    elif result.status == "unsupported":
        answer.notice = UNSURE_NOTICE if result.unsure else UNSUPPORTED_NOTICE
        answer.text = f"{answer.notice}\n{extractive_answer(result.evidence)}"
    return answer


def _confidence(logprobs: list[float]) -> float | None:
    """The geometric-mean token probability of a reply: how sure its model was, length aside (0–1)."""
    return round(math.exp(statistics.fmean(logprobs)), 4) if logprobs else None


@dataclass
class AnswerStream:
    """Iterate for text pieces as they are generated; ``answer`` is complete (and grounded) once exhausted.

    ``model=None`` answers extractively: no generation, the best evidence sentences are the one piece.
    ``embedder`` is the collection's (the one retrieval used); ``check`` turns the grounding check on.
    """

    model: ChatModel | None
    question: str
    messages: list[Message]
    sources: list[Source]
    params: GenerationParams
    collection: str = ""
    answer: Answer | None = None
    id: str = ""
    embedder: Embedder | None = None
    check: bool = True
    notice: str = ""  # why there is no model (shown with an extractive answer)
    pieces: Iterable[str] | None = None  # a reply already started (a remote's, opened by routing)
    on_done: Callable[[Answer], None] | None = None  # runs on the grounded answer (the routing audit)

    def __iter__(self) -> Iterator[str]:
        if self.model is None:
            yield from self._extractive()
            self._done()
            return
        pieces: list[str] = []
        logprobs: list[float] = []  # the local runtime's, for the grounding check's confidence test
        started = self.pieces
        if started is None:
            started = self.model.stream_scored(self.messages, self.params, logprobs)
        for piece in started:
            pieces.append(piece)
            yield piece
        text = "".join(pieces).strip()
        answer = Answer(
            question=self.question,
            text=text,
            sources=self.sources,
            model=self.model.name,
            collection=self.collection,
            cited=cited_numbers(text, len(self.sources)),
            usage={"prompt_tokens": self.model.prompt_tokens(self.messages), "completion_pieces": len(pieces)},
            id=self.id,
            generated=text,
            confidence=_confidence(logprobs),
        )
        self.answer = ground_answer(answer, self.embedder, self.check)
        self._done()

    def _done(self) -> None:
        if self.on_done is not None and self.answer is not None:
            self.on_done(self.answer)

    def _extractive(self) -> Iterator[str]:
        answer = Answer(self.question, "", self.sources, EXTRACTIVE_MODEL, self.collection, id=self.id)
        self.answer = ground_answer(answer, self.embedder)
        self.answer.notice = self.notice
        yield self.answer.text

    def result(self) -> Answer:
        """Run to the end (if not yet) and return the answer."""
        if self.answer is None:
            for _ in self:
                pass
        assert self.answer is not None
        return self.answer
