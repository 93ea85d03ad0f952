"""Fine-tune the answer model for a hub collection, and ship the LoRA to laptops the way models travel.

Pairs come from three places, all optional but not all empty:

- a JSONL file an administrator wrote (``--pairs``);
- feedback marked helpful that carries its question text (outposts send text only when their
  settings allow): the answer is the sentence of the helpful source that best matches the question,
  so it is grounded in the collection and needs no generated text;
- the collection's own chunks (``--generate N``): the hub's model writes a question for a sentence of
  the chunk, and that sentence is the answer.

The adapter is judged by llama.cpp on held-out pairs (``outpost.finetune.heldout``) and published as a
hub model (``hub://NAME``, signed manifest, resumable download) only if it beats the base model;
otherwise nothing is written to the hub's registry.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from outpost.errors import ConfigError
from outpost.finetune import Judgement, QAPair, TrainConfig, TrainedLora, judge, load_pairs, split_pairs, train_lora
from outpost.hub.service import Hub
from outpost.llm.base import ChatModel, GenerationParams
from outpost.models.registry import Registry
from outpost.models.resolve import resolve_model

__all__ = ["FinetuneReport", "feedback_pairs", "finetune", "generated_pairs"]

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


@dataclass
class FinetuneReport:
    collection: str
    published: bool
    model: str | None
    reason: str
    sources: dict[str, int] = field(default_factory=dict)
    train_pairs: int = 0
    heldout_pairs: int = 0
    judgement: Judgement | None = None
    trained: TrainedLora | None = None


def _sentences(text: str) -> list[str]:
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if len(s.strip()) > 3]


def _best_sentence(question: str, text: str) -> str | None:
    """The sentence of ``text`` sharing the most words with ``question`` (None when none shares any)."""
    asked = {w.lower() for w in _WORD.findall(question) if len(w) > 2}
    scored = [(len(asked & {w.lower() for w in _WORD.findall(s)}), s) for s in _sentences(text)]
    best = max(scored, key=lambda pair: pair[0], default=(0, None))
    return best[1] if best[0] > 0 else None


def _chunk_texts(hub: Hub, collection: str, ids: set[str] | None = None, limit: int | None = None) -> dict[str, str]:
    store = hub.store(collection)
    try:
        chunks = store.all_chunks()
    finally:
        store.close()
    found = {c.id: c.text for c in chunks if ids is None or c.id in ids}
    return dict(list(found.items())[:limit]) if limit is not None else found


def feedback_pairs(hub: Hub, collection: str) -> list[QAPair]:
    """Helpful feedback with question text → (question, best-matching sentence of its helpful source)."""
    rows = hub.home.metadata().feedback(collection, counting_only=False, with_query=True)
    wanted: list[tuple[str, str]] = []
    for row in rows:
        helpful = [cid for cid, v in row.source_votes.items() if v]
        if not helpful and not row.source_votes and row.answer_vote == 1:
            helpful = row.shown[:1]  # a helpful answer with no source votes credits its first source
        wanted += [(row.query or "", cid) for cid in helpful[:1]]
    texts = _chunk_texts(hub, collection, {cid for _, cid in wanted})
    pairs = []
    for question, cid in wanted:
        answer = _best_sentence(question, texts.get(cid, ""))
        if answer:
            pairs.append(QAPair(question.strip(), answer, origin="feedback"))
    return pairs


_ASK = "Write one short question that this sentence answers. Reply with the question only.\n\nSentence: {sentence}"


def generated_pairs(hub: Hub, collection: str, model: ChatModel, limit: int) -> list[QAPair]:
    """Up to ``limit`` pairs from the collection's chunks: the model asks, the chunk's sentence answers."""
    params = GenerationParams(temperature=0.0, max_tokens=40, seed=0)
    pairs = []
    for text in _chunk_texts(hub, collection, limit=limit).values():
        sentences = [s for s in _sentences(text) if len(_WORD.findall(s)) >= 4]
        if not sentences:
            continue
        sentence = max(sentences, key=lambda s: len(_WORD.findall(s)))  # the most informative line
        reply = model.complete([{"role": "user", "content": _ASK.format(sentence=sentence)}], params)
        question = reply.strip().splitlines()[0].strip() if reply.strip() else ""
        if question.endswith("?") and question.lower() != sentence.lower():
            pairs.append(QAPair(question, sentence, origin="generated"))
    return pairs


def _gather(hub: Hub, collection: str, base: Path, pairs_file: Path | None, generate: int) -> list[QAPair]:
    pairs = load_pairs(pairs_file) if pairs_file else []
    pairs += feedback_pairs(hub, collection)
    if generate > 0:
        from outpost.llm.llamacpp import LlamaCppModel
        from outpost.models.advisor import offload_layers

        model = LlamaCppModel(base, n_ctx=2048, n_gpu_layers=offload_layers(base, 2048))
        pairs += generated_pairs(hub, collection, model, generate)
    if not pairs:
        raise ConfigError(
            f"No question/answer pairs for {collection!r}: no helpful feedback carries question text; "
            "pass --pairs FILE.jsonl or --generate N"
        )
    return pairs


def finetune(
    hub: Hub,
    collection: str,
    base: str = "smollm2",
    *,
    pairs_file: Path | None = None,
    generate: int = 0,
    config: TrainConfig | None = None,
    name: str | None = None,
    min_gain: float = 0.05,
    n_threads: int | None = None,
    progress: Progress | None = None,
) -> FinetuneReport:
    """Train, judge, and publish a LoRA adapter as hub model ``name`` (default ``<collection>-lora``)."""
    hub.info(collection)  # a clear error for an unknown collection, before minutes of work
    name = name or f"{collection}-lora"
    registry = Registry(hub.home.root)
    base_path = resolve_model(hub.home.root, base).path
    pairs = _gather(hub, collection, base_path, pairs_file, generate)
    train, heldout = split_pairs(pairs)
    with tempfile.TemporaryDirectory(prefix="outpost-lora-") as work:
        adapter = Path(work) / f"{name}.gguf"
        trained = train_lora(base_path, train, adapter, config, progress, heldout=heldout)
        golds = [p.answer for p in heldout]
        judgement = judge(base_path, adapter, trained.heldout_encoded, golds, min_gain, n_threads)
        report = FinetuneReport(
            collection,
            judgement.helps,
            name if judgement.helps else None,
            judgement.summary(),
            dict(Counter(p.origin for p in pairs)),
            len(train),
            len(heldout),
            judgement,
            trained,
        )
        if not judgement.helps:
            report.reason = f"not published: the adapter does not beat {base} on held-out pairs ({report.reason})"
            return report
        registry.pull_file(adapter, name)
    log.info("published LoRA %s for %s: %s", name, collection, report.reason)
    return report
