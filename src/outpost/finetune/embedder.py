"""Fine-tune the embedding model on a collection: generated questions, mined hard negatives, a held-out gate.

Why the embedder and not only the linear query adapter: an adapter moves query vectors inside a space the
base model drew, so it mostly learns a prior toward documents that votes already cited; a fine-tuned encoder
can learn what the collection's own words mean. The price is a new embedding identity (DESIGN.md §11): every
chunk is re-embedded and laptops receive the new query encoder (``outpost.hub.embedder`` ships it).

The steps, each usable alone (the hub glue in ``outpost.hub.embedder_learning`` chains them):

1. :func:`generate_questions` — a local GGUF (the bundled Gemma 3 270M, or a bigger model by path) writes one
   search question per sampled chunk, 16 chunks at a time on one llama.cpp context (``llm.batch``); answers
   are cached on disk by chunk text and recipe, so a rerun or a bigger budget only generates what is new. It is
   still the slow step on a CPU (about 2.6 questions/s on 2 cores): ``max_chunks`` bounds it.
2. :func:`mine_pairs` — the consistency filter (a question must find its own chunk in the current index's
   top ``k``: a question that does not is noise the model cannot learn from) and hard negatives (the
   highest-ranked chunks of *other* documents: a chunk of the same document may well answer it too).
3. :func:`train_embedder` — sentence-transformers' ``MultipleNegativesRankingLoss`` (in-batch negatives plus
   each pair's hard negatives), a full fine-tune bounded by steps, batch and ``max_seq_length``.
4. :func:`gate` — ranks the held-out judged queries before and after (nDCG@10 and MRR@10 over the same
   hybrid retrieval users get); a model is worth shipping only if both improve.

torch and sentence-transformers are imported inside the functions that need them. Core module: no hub,
api or cli imports (the hub passes its held-out split in as data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from outpost.embed.base import Embedder
from outpost.errors import ConfigError
from outpost.metrics import ndcg_at_k, reciprocal_rank
from outpost.store.sqlite import Store

__all__ = [
    "EmbedderTrainConfig",
    "GateResult",
    "HybridIndex",
    "Judged",
    "Passage",
    "Pair",
    "TrainedEmbedder",
    "gate",
    "generate_questions",
    "MinedPairs",
    "candidate_index",
    "judge_candidates",
    "judge_pairs",
    "judged_pairs",
    "mine_pairs",
    "store_bm25",
    "rank_metrics",
    "sample_passages",
    "store_passages",
    "train_embedder",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

Search = Callable[[str, int], list[str]]  # query text, k → chunk ids, best first
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Passage:
    """A chunk as the embedder reads it (heading path + body: ``ingest.chunker.embedding_text``)."""

    id: str
    doc: str
    text: str


@dataclass(frozen=True)
class Pair:
    """One training query: its text, the chunk that answers it, chunks of other documents that do not."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    origin: str = "generated"  # generated | feedback | qrels
    relevant: frozenset[str] = frozenset()  # other chunks judged relevant to the query: never its negatives


@dataclass(frozen=True)
class Judged:
    """A held-out query for the gate: its text and the chunks judged relevant (grade > 0)."""

    query: str
    relevant: dict[str, int]


# -- 1. question generation -------------------------------------------------------------------------

# The bundled Gemma 3 270M is a base model (no chat template): a few-shot transcript is what it continues best.
# Three examples from unrelated fields, not one: with a single (health) example, 34 of 64 NFCorpus chunks got no
# usable question, mostly a copy of the example's own; with these three all 64 did and 35 passed the consistency
# filter (benchmarks/embedder_learning.py generate-rate). They are a prefix shared by every prompt, evaluated once.
QUESTION_EXAMPLES = (
    "Article: Green tea and stroke. Green tea consumption was associated with a lower risk of stroke in a cohort "
    "of 80,000 Japanese adults.\nQuestion: Does drinking green tea lower the risk of stroke?\n\n"
    "Article: Release notes 4.2. The sync command now resumes an interrupted download from the last verified "
    "block instead of starting over.\nQuestion: What happens when a sync download is interrupted?\n\n"
    "Article: The Treaty of Westphalia. Signed in 1648, the treaties ended the Thirty Years' War and recognised "
    "the sovereignty of the German states.\nQuestion: Which war ended with the Peace of Westphalia?\n\n"
)
QUESTION_PROMPT = "Article: {text}\nQuestion:"
_EXAMPLE_QUESTIONS = {
    line.split(": ", 1)[1].lower() for line in QUESTION_EXAMPLES.splitlines() if line.startswith("Question: ")
}
PROMPT_WORDS = 90  # passage words shown to the generator: prompt evaluation is most of its time on a CPU
GENERATION_SLOTS = 16  # completions per llama.cpp pass: 2.39 chunks/s on 2 cores (8: 2.36; one at a time: 1.23)
QUESTION_TOKENS = 28


def _prompt_key(generator: str, text: str) -> str:
    recipe = f"{generator}\0{QUESTION_EXAMPLES}{QUESTION_PROMPT}\0{PROMPT_WORDS}\0{QUESTION_TOKENS}"
    return hashlib.sha256(f"{recipe}\0{text}".encode()).hexdigest()[:32]


def sample_passages(passages: Sequence[Passage], max_chunks: int, seed: int = 0) -> list[Passage]:
    """Up to ``max_chunks`` passages spread over documents: every document's first chunk (in a seeded
    hash order) before any document's second, so a small budget still covers as many documents as it can."""
    by_doc: dict[str, list[Passage]] = {}
    for p in passages:
        by_doc.setdefault(p.doc, []).append(p)

    def order(key: str) -> str:
        return hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()

    docs = sorted(by_doc, key=order)
    picked: list[Passage] = []
    depth = 0
    while len(picked) < max_chunks and any(len(by_doc[d]) > depth for d in docs):
        picked += [by_doc[d][depth] for d in docs if len(by_doc[d]) > depth][: max_chunks - len(picked)]
        depth += 1
    return picked


def _read_cache(path: Path | None, column: str, kind: Callable[[Any], T]) -> dict[str, T]:
    """A JSONL cache of ``{"key": ..., column: ...}`` rows as key → ``kind(value)`` (later rows win)."""
    if path is None or not path.is_file():
        return {}
    out: dict[str, T] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            out[str(row["key"])] = kind(row[column])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interrupted run: done again
    return out


def _clean_question(reply: str) -> str:
    """The first line of the reply, when it reads like a question (else empty: the pair is skipped)."""
    line = reply.strip().splitlines()[0].strip() if reply.strip() else ""
    line = line[: line.index("?") + 1] if "?" in line else line
    words = re.findall(r"\w+", line)
    if len(words) < 3 or line.lower() in _EXAMPLE_QUESTIONS:
        return ""
    return line


def generate_questions(
    passages: Sequence[Passage],
    generator: Path,
    cache: Path | None = None,
    n_threads: int | None = None,
    time_budget_s: float | None = None,
    progress: Progress | None = None,
    slots: int = GENERATION_SLOTS,
) -> dict[str, str]:
    """Chunk id → a generated question, for each passage the generator gave a usable question for.

    Greedy completions, ``slots`` at a time on one llama.cpp context (``llm.batch.BatchCompleter``). Answers
    are appended to ``cache`` (JSONL keyed by generator, recipe and passage text) as they come, so an
    interrupted run keeps its work. ``time_budget_s`` stops generating (not reading the cache) after that long.
    """
    from outpost.llm.batch import BatchCompleter

    if not generator.is_file():
        raise ConfigError(f"No GGUF file at {generator}: pass a model file or a bundled name")
    cached = _read_cache(cache, "question", str)
    keys = {p.id: _prompt_key(generator.name, p.text) for p in passages}
    todo = [p for p in passages if keys[p.id] not in cached]
    if todo and (time_budget_s is None or time_budget_s > 0):  # a zero budget reads the cache only
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
        prompts = (QUESTION_PROMPT.format(text=" ".join(p.text.split()[:PROMPT_WORDS])) for p in todo)
        started = time.monotonic()
        with BatchCompleter(generator, slots=slots, n_threads=n_threads) as model:
            replies = model.complete(prompts, prefix=QUESTION_EXAMPLES, max_tokens=QUESTION_TOKENS, stop="\n")
            for done, (index, reply) in enumerate(replies, 1):
                p = todo[index]
                cached[keys[p.id]] = _clean_question(reply)
                if cache:
                    with cache.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"key": keys[p.id], "chunk": p.id, "question": cached[keys[p.id]]}) + "\n")
                if progress:
                    progress("generate", 1, len(todo))
                if time_budget_s is not None and time.monotonic() - started > time_budget_s:
                    log.info("question generation stopped by its time budget after %d of %d", done, len(todo))
                    break
    return {p.id: cached[keys[p.id]] for p in passages if cached.get(keys[p.id])}


def store_passages(store: Store) -> list[Passage]:
    """Every chunk of ``store`` as the embedder reads it, in store order."""
    from outpost.ingest.chunker import embedding_text

    # A chunk's heading as the store reads it (its document's title where the row stores NULL, migration 4): the
    # vectors were computed with it, so training sees the same text
    return [Passage(c.id, c.doc_key, embedding_text(c)) for c in store.all_chunks()]


# -- 2. hard negatives and the consistency filter ----------------------------------------------------


@dataclass
class MinedPairs:
    pairs: list[Pair]
    asked: int  # questions offered
    inconsistent: int  # dropped: the question did not find its own chunk in the top ``k``


def mine_pairs(
    questions: dict[str, str],
    chunk_doc: dict[str, str],
    search: Search,
    k: int = 10,
    negatives: int = 3,
    depth: int = 30,
    origin: str = "generated",
) -> MinedPairs:
    """Keep each (question, chunk) the current index finds in its top ``k``; its hard negatives are the
    best-ranked chunks of other documents within ``depth`` (a chunk of its own document may answer it too)."""
    pairs: list[Pair] = []
    dropped = 0
    for cid, question in questions.items():
        ranked = search(question, max(k, depth))
        if cid not in ranked[:k]:
            dropped += 1
            continue
        own = chunk_doc.get(cid)
        hard = [c for c in ranked if c != cid and chunk_doc.get(c) != own][:negatives]
        pairs.append(Pair(question, cid, tuple(hard), origin))
    return MinedPairs(pairs, len(questions), dropped)


# The generator as a judge (GPL's idea, with the generator in place of a cross-encoder): how likely it is to
# write the question after reading a chunk. The consistency filter asks the base model whether a question finds its
# chunk, so it keeps only questions the base model already answers (they teach little), and mined hard negatives
# are often as relevant as the question's own chunk (they teach harm). The judge answers both from outside the
# base model. Measured (benchmarks/embedder_learning.py run --judge 2000, dev only): with the bundled Gemma 3 270M as
# judge it keeps 1,715 of 2,000 questions (the filter 1,362), and a model trained on them alone still loses on
# NFCorpus dev (0.3310 → 0.3198), so the hub keeps the filter; a bigger judge by path is what this is for.
JUDGE_CANDIDATES = 4  # best-ranked chunks of other documents scored against each question's own
JUDGE_MARGIN = 1.0  # nats: a candidate at least this much less likely to have prompted the question is a negative


def _judge_key(judge: str, text: str, question: str) -> str:
    recipe = f"{judge}\0{QUESTION_EXAMPLES}{QUESTION_PROMPT}\0{PROMPT_WORDS}"
    return hashlib.sha256(f"{recipe}\0{text}\0{question}".encode()).hexdigest()[:32]


def judge_candidates(
    questions: dict[str, str], chunk_doc: dict[str, str], search: Search, candidates: int, depth: int = 30
) -> dict[str, list[str]]:
    """Chunk id → the chunks the judge scores its question against: the chunk itself first, then the index's
    ``candidates`` best-ranked chunks of other documents within ``depth``."""
    offered: dict[str, list[str]] = {}
    for cid, question in questions.items():
        own_doc = chunk_doc.get(cid)
        others = [c for c in search(question, depth) if c != cid and chunk_doc.get(c) != own_doc]
        offered[cid] = [cid, *others[:candidates]]
    return offered


def judge_pairs(
    questions: dict[str, str],
    texts: dict[str, str],
    chunk_doc: dict[str, str],
    search: Search,
    judge: Path,
    candidates: int = JUDGE_CANDIDATES,
    margin: float = JUDGE_MARGIN,
    depth: int = 30,
    cache: Path | None = None,
    n_threads: int | None = None,
    progress: Progress | None = None,
    slots: int = GENERATION_SLOTS,
    origin: str = "generated",
) -> MinedPairs:
    """Keep each (question, chunk) the judge model finds likelier from its own chunk than from any of the
    current index's ``candidates`` best chunks of other documents; its negatives are those candidates the judge
    finds ``margin`` nats less likely (best-ranked first), so a candidate as good as the positive is never one.

    Scores are log P(question | few-shot prefix + the chunk's prompt), from the same prompt that generated the
    questions; cached in ``cache`` (JSONL keyed by judge, recipe, chunk text and question) as they come.
    """
    from outpost.llm.batch import BatchCompleter

    if not judge.is_file():
        raise ConfigError(f"No GGUF file at {judge}: pass a model file or a bundled name")
    scored = _read_cache(cache, "score", float)
    offered = judge_candidates(questions, chunk_doc, search, candidates, depth)
    wanted = {
        _judge_key(judge.name, texts[c], questions[cid]): (c, questions[cid])
        for cid, chunks in offered.items()
        for c in chunks
    }
    todo = [(key, c, q) for key, (c, q) in wanted.items() if key not in scored]
    if todo:
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
        pairs = ((QUESTION_PROMPT.format(text=" ".join(texts[c].split()[:PROMPT_WORDS])), " " + q) for _, c, q in todo)
        with BatchCompleter(judge, slots=slots, n_threads=n_threads) as model:
            for index, score in model.loglikelihood(pairs, prefix=QUESTION_EXAMPLES):
                scored[todo[index][0]] = score
                if cache:
                    with cache.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"key": todo[index][0], "score": score}) + "\n")
                if progress:
                    progress("judge", 1, len(todo))
    out: list[Pair] = []
    for cid, chunks in offered.items():
        question = questions[cid]
        own, *rest = (scored[_judge_key(judge.name, texts[c], question)] for c in chunks)
        if any(score >= own for score in rest):
            continue
        negatives = tuple(c for c, score in zip(chunks[1:], rest) if score <= own - margin)
        out.append(Pair(question, cid, negatives, origin))
    return MinedPairs(out, len(questions), len(questions) - len(out))


def judged_pairs(
    judged: Iterable[tuple[str, Sequence[str], Sequence[str]]], per_query: int = 4, origin: str = "qrels"
) -> list[Pair]:
    """(query text, positive chunk ids best first, hard negative chunk ids) → up to ``per_query`` pairs each
    (a query's hard negatives are shared by its pairs). What feedback and imported qrels become."""
    out: list[Pair] = []
    for query, positives, negatives in judged:
        relevant = frozenset(positives)
        out += [Pair(query, p, tuple(negatives), origin, relevant - {p}) for p in list(positives)[:per_query]]
    return out


# -- 3. training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedderTrainConfig:
    """Bounded on purpose: two CPU cores train MiniLM at roughly a step per few seconds at these sizes."""

    max_steps: int = 300
    epochs: float = 1.0
    batch_size: int = 32
    max_seq_length: int = 128  # passages are cut here while training only; re-embedding uses the model's own
    learning_rate: float = 2e-5
    warmup: float = 0.1
    negatives_per_pair: int = 1
    scale: float = 20.0  # MNRL's inverse temperature (sentence-transformers' default)
    freeze_embeddings: bool = False  # keep the word-piece table (half of MiniLM's weights): much cheaper steps
    seed: int = 0
    device: str | None = None  # None: cuda when present, else cpu
    threads: int | None = None  # CPU threads; None: see ``_cpu_threads``


def _cpu_threads(requested: int | None) -> int:
    """Torch's CPU threads for training: the usable cores, but one when the machine is already oversubscribed.

    Why: each of the thousands of small ops per step ends at an OpenMP barrier, and with more runnable threads
    than cores a barrier waits for a descheduled sibling's next time slice. Measured on 2 cores at load ~25:
    30 steps of 4 pairs took 674 s with two threads (most of it spinning at barriers).
    """
    import os

    from outpost.cpus import usable_cpus

    cores = usable_cpus()
    if requested:
        return max(1, requested)
    return 1 if os.getloadavg()[0] > cores else cores


@dataclass
class TrainedEmbedder:
    path: Path
    steps: int
    pairs: int
    seconds: float
    device: str
    losses: list[float] = field(default_factory=list)


def _batches(pairs: list[Pair], size: int, rng: random.Random) -> list[list[Pair]]:
    """Shuffled batches in which no pair's positive is a known answer of another pair's query.

    MNRL treats every other pair's positive as a wrong answer for each query, so a batch must not hold: one chunk
    as the positive of two queries; one query twice (a judged query with several positives: each would be taught
    that its other answers are wrong); or a positive judged relevant to another query of the batch. The last is
    common in judged collections (an NFCorpus document is relevant to about 30 training queries): left in, a
    batch of 32 teaches that some right answers are wrong. A pair that does not fit waits for a later batch.
    """
    pool = pairs[:]
    rng.shuffle(pool)
    batches: list[list[Pair]] = []
    while pool:
        batch: list[Pair] = []
        used: set[str] = set()  # the batch's positives
        queries: set[str] = set()
        known: set[str] = set()  # chunks judged relevant to a query of the batch
        rest: list[Pair] = []
        for p in pool:
            fits = p.positive not in used and p.query not in queries and p.positive not in known
            if len(batch) < size and fits and not (p.relevant & used):
                batch.append(p)
                used.add(p.positive)
                queries.add(p.query)
                known |= p.relevant
            else:
                rest.append(p)
        batches.append(batch)
        pool = rest
    return batches


def _columns(
    batch: list[Pair], texts: dict[str, str], n_neg: int, rng: random.Random, pool: list[str]
) -> list[list[str]]:
    """Anchor, positive and ``n_neg`` negative columns; a pair short of hard negatives gets random chunks.

    No negative is a positive of the batch (the rule of sentence-transformers' ``NO_DUPLICATES`` sampler): MNRL
    scores every query against every column, so a chunk that is pair A's positive and pair B's hard negative
    stands twice among A's candidates, once as the answer and once as a wrong one. A's loss then cannot fall
    below log 2 and its gradient partly cancels. Nothing is lost by skipping it: B still meets that chunk as an
    in-batch negative. Small collections hit this all the time (every chunk is some pair's positive: on the
    8-chunk test collection it was most negatives, and the loss stalled at 0.46 instead of falling near 0).
    With no chunk left that is not a positive, the batch trains on in-batch negatives alone.
    """
    positives = {p.positive for p in batch}
    columns = [[p.query for p in batch], [texts[p.positive] for p in batch]]
    spare = [c for c in pool if c not in positives]
    for j in range(n_neg if spare else 0):
        column = []
        for p in batch:
            hard = [n for n in p.negatives if n in texts and n not in positives and n not in p.relevant]
            column.append(texts[hard[j]] if j < len(hard) else texts[rng.choice(spare)])
        columns.append(column)
    return columns


def _on(features: dict[str, Any], device: str) -> dict[str, Any]:
    """Tokenised features with their tensors on ``device`` (other entries, e.g. the modality, kept as they are)."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}


def train_embedder(
    base: str | Path,
    pairs: list[Pair],
    texts: dict[str, str],
    out: Path,
    config: EmbedderTrainConfig | None = None,
    progress: Progress | None = None,
) -> TrainedEmbedder:
    """Fine-tune the sentence-transformers model at ``base`` on ``pairs`` (chunk ids → ``texts``); save to ``out``.

    The loss is sentence-transformers' ``MultipleNegativesRankingLoss`` over [query ‖ positive ‖ hard negatives]
    columns, driven by a plain loop: its ``SentenceTransformerTrainer`` needs the ``datasets`` package, which
    nothing else here uses, for what is a few hundred steps of AdamW.
    """
    config = config or EmbedderTrainConfig()
    usable = [p for p in pairs if p.positive in texts and p.query.strip()]
    if not usable:
        raise ConfigError("No training pairs: no generated question passed the consistency filter and no judged query")
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(_cpu_threads(config.threads))
    try:
        return _train(base, usable, texts, out, config, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    base: str | Path,
    usable: list[Pair],
    texts: dict[str, str],
    out: Path,
    config: EmbedderTrainConfig,
    progress: Progress | None,
) -> TrainedEmbedder:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from outpost.embed.local_model import resolve_model_dir

    started = time.monotonic()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = SentenceTransformer(str(resolve_model_dir(str(base)) or base), device=device, local_files_only=True)
    full_length = int(model.max_seq_length or config.max_seq_length)
    model.max_seq_length = min(config.max_seq_length, full_length)
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)
    per_epoch = _batches(usable, config.batch_size, rng)
    steps = max(1, min(config.max_steps, int(config.epochs * len(per_epoch))))
    if config.freeze_embeddings:
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, foreach=True)
    warm = max(1, int(config.warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    pool = list(texts)
    model.train()
    losses: list[float] = []
    batches = per_epoch
    for step in range(steps):
        if step and step % len(per_epoch) == 0:
            batches = _batches(usable, config.batch_size, rng)
        columns = _columns(batches[step % len(batches)], texts, config.negatives_per_pair, rng, pool)
        features = [_on(model.preprocess(col), device) for col in columns]
        loss = loss_fn(features, torch.empty(0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress:
            progress("train", 1, steps)
    model.eval()
    model.max_seq_length = full_length  # the saved model embeds like the base: only training was cut short
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    seconds = time.monotonic() - started
    log.info("fine-tuned %s: %d steps on %d pairs in %.0f s (%s)", base, steps, len(usable), seconds, device)
    return TrainedEmbedder(out, steps, len(usable), seconds, device, losses)


# -- 4. retrieval with a candidate model, and the gate -------------------------------------------------


@dataclass
class HybridIndex:
    """Hybrid search over given chunk vectors and a BM25 function, fused the way ``Retriever`` fuses.

    Why not a ``Store``: the gate must rank with a candidate model before anything is published, so the
    candidate's vectors live in memory (int8-rounded like stored ones) while BM25 is the collection's own.
    """

    ids: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit rows
    encode: Callable[[list[str]], np.ndarray]  # query texts → unit vectors
    bm25: Search | None = None
    rrf_k: int = 60
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    depth: int = 100
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def prime(self, queries: Sequence[str]) -> None:
        """Embed many queries in one batch (much faster than one by one)."""
        todo = [q for q in dict.fromkeys(queries) if q not in self._cache]
        if todo:
            self._cache.update(zip(todo, _int8_rounded(self.encode(todo))))

    def dense(self, text: str, k: int) -> list[str]:
        self.prime([text])
        scores = self.vectors @ self._cache[text]
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        return [self.ids[i] for i in top[np.argsort(-scores[top], kind="stable")]]

    def search(self, text: str, k: int) -> list[str]:
        from outpost.retrieve import rrf

        depth = max(self.depth, k)
        dense = self.dense(text, depth)
        if self.bm25 is None:
            return dense[:k]
        lexical = self.bm25(text, depth)
        # ``rrf`` is typed for the store's integer row ids; any hashable key fuses the same way
        fused = rrf(
            [(cast(list[int], lexical), self.bm25_weight), (cast(list[int], dense), self.dense_weight)], self.rrf_k
        )
        return [str(cid) for cid, _ in fused[:k]]


def _int8_rounded(vectors: np.ndarray) -> np.ndarray:
    """What the vectors become once stored (int8 with a per-row scale), so candidates rank like shipped ones."""
    from outpost.embed.quantize import dequantize, quantize

    q, scale = quantize(np.asarray(vectors, dtype=np.float32))
    out = dequantize(q, scale)
    normed: np.ndarray = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return normed


def candidate_index(
    embedder: Embedder, passages: Sequence[Passage], bm25: Search | None, progress: Progress | None = None, **kw: Any
) -> HybridIndex:
    """Embed every passage with ``embedder`` (a candidate model: the re-embedding a new identity needs).

    Load it the way the collection will run it (``embed.factory.load_embedder`` on the model folder: the ONNX
    graph on a CPU), so the gate measures the vectors that would ship.
    """
    texts = [p.text for p in passages]
    counted = (lambda n: progress("embed", n, len(texts))) if progress else None
    vectors = embedder.embed(texts, progress=counted)
    return HybridIndex([p.id for p in passages], _int8_rounded(vectors), embedder.embed, bm25, **kw)


def store_bm25(store: Store) -> Search:
    """The collection's own BM25 (``Store.bm25``) as chunk ids."""
    with store.reading():
        by_rowid = dict(store.db.execute("SELECT rowid, id FROM chunks").fetchall())
    return lambda text, k: [by_rowid[r] for r, _ in store.bm25(text, k) if r in by_rowid]


@dataclass
class GateResult:
    before: dict[str, float]
    after: dict[str, float]
    queries: int
    min_gain: float

    @property
    def improved(self) -> bool:
        """Both nDCG@10 and MRR@10 must rise by ``min_gain``: a model that trades one for the other is not shipped."""
        return self.queries > 0 and all(
            self.after[m] >= self.before[m] + self.min_gain and self.after[m] > self.before[m]
            for m in ("ndcg@10", "mrr@10")
        )

    def summary(self) -> str:
        return (
            f"held-out nDCG@10 {self.before['ndcg@10']:.4f} → {self.after['ndcg@10']:.4f}, "
            f"MRR@10 {self.before['mrr@10']:.4f} → {self.after['mrr@10']:.4f} on {self.queries} queries"
        )


def rank_metrics(
    search: Search, judged: Sequence[Judged], unit: Callable[[str], str] | None = None, k: int = 10
) -> dict[str, float]:
    """Mean nDCG@k and MRR@k of ``judged`` under ``search``; ``unit`` maps a chunk to what was judged
    (its document, for BEIR qrels: a document ranks as its best chunk)."""
    if not judged:
        return {"ndcg@10": 0.0, "mrr@10": 0.0}
    ndcg = mrr = 0.0
    for j in judged:
        ranked = search(j.query, k * 10 if unit else k)
        if unit:
            ranked = list(dict.fromkeys(unit(c) for c in ranked))
        relevant = {u for u, g in j.relevant.items() if g > 0}
        ndcg += ndcg_at_k(ranked, j.relevant, k)
        mrr += reciprocal_rank(ranked, relevant, k)
    return {"ndcg@10": ndcg / len(judged), "mrr@10": mrr / len(judged)}


def gate(
    before: Search,
    after: Search,
    held: Sequence[Judged],
    min_gain: float = 0.0,
    unit: Callable[[str], str] | None = None,
) -> GateResult:
    """Rank the held-out queries with the current and the candidate retrieval; see :attr:`GateResult.improved`."""
    result = GateResult(rank_metrics(before, held, unit), rank_metrics(after, held, unit), len(held), min_gain)
    log.info("embedder gate: %s (%s)", result.summary(), "passes" if result.improved else "fails")
    return result
