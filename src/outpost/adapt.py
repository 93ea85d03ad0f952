"""Query adapters: a linear map on query embeddings, learned from relevance feedback.

Why query-side and linear: document vectors stay as shipped (no re-embedding, no new packs of
chunks), the map is one ``dim × dim`` matrix (~590 KB for MiniLM), and starting at the identity it
can only move as far as the evidence pushes it. Training minimises an InfoNCE loss: each query's
adapted vector must score its positive chunk above in-batch positives of other queries and above
its own hard negatives (chunks users voted down, or that dense search ranks high but are wrong),
with an L2 pull back towards the identity.

An adapter is only worth shipping if it ranks better on queries it was not trained on:
:func:`fit` splits the examples, trains on one part and compares MRR@10 on the held-out part.

Votes come from many outposts, and one of them may be hostile, so no single source may own that gate
(each example names its ``source``: a hub token id, or ``""`` for the hub operator's own judgements):
the split is by ``key``, which the hub derives with a secret so an uploader cannot steer its items
into the held-out part; :func:`cap_sources` limits each token's share of the training and held-out
sets; and an adapter passes only if it also gains on the held-out queries of everyone but each token
in turn (:func:`independent_gain`), so a token's votes alone can never publish one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from outpost.errors import ConfigError
from outpost.metrics import recall_at_k, reciprocal_rank

__all__ = ["Example", "FitResult", "cap_sources", "evaluate", "fit", "independent_gain", "split", "train_matrix"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One judged query: its raw embedding, chunks that answer it, chunks that don't."""

    query: np.ndarray
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    key: str = ""  # stable identity for the train/held-out split
    source: str = ""  # who supplied it: a token id, or "" for the hub operator (trusted)


@dataclass
class FitResult:
    matrix: np.ndarray
    before: dict[str, float]
    after: dict[str, float]
    train_examples: int
    heldout_examples: int
    improved: bool
    notes: list[str] = field(default_factory=list)


def hash_share(key: str) -> float:
    """Where ``key`` falls in [0, 1] by its hash: the same on every run and machine (deterministic splits)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split(examples: list[Example], heldout: float = 0.2) -> tuple[list[Example], list[Example]]:
    """Deterministic split by a hash of each example's key (or query), so reruns agree."""
    train: list[Example] = []
    held: list[Example] = []
    for ex in examples:
        key = ex.key or hashlib.sha256(np.asarray(ex.query, np.float32).tobytes()).hexdigest()
        (held if hash_share(key) < heldout else train).append(ex)
    return train, held


def cap_sources(examples: list[Example], share: float) -> list[Example]:
    """Keep at most ``share`` of ``examples`` from any one token (trusted ``""`` examples are never capped).

    A token's limit is ``share / (1 - share)`` times what every other source supplied, so with the default
    0.5 a token counts at most as much as all others together, and a token alone counts for nothing. Which
    of its examples survive follows ``key`` order (hub-chosen), not upload order; ``share >= 1`` disables
    the cap (a hub whose every token is trusted).
    """
    if share >= 1.0:
        return list(examples)
    counts = Counter(ex.source for ex in examples)
    limit = {s: math.floor(share / (1.0 - share) * (len(examples) - n)) for s, n in counts.items() if s}
    used: Counter[str] = Counter()
    keep: set[int] = set()
    for i in sorted(range(len(examples)), key=lambda i: examples[i].key):
        source = examples[i].source
        if source and used[source] >= limit[source]:
            continue
        used[source] += 1
        keep.add(i)
    return [ex for i, ex in enumerate(examples) if i in keep]


def independent_gain(
    matrix: np.ndarray,
    current: np.ndarray | None,
    train: list[Example],
    held: list[Example],
    ids: list[str],
    vectors: np.ndarray,
    min_gain: float,
) -> str | None:
    """Why the adapter fails the gate without any single token's held-out queries, or None if it passes.

    For each token that supplied training examples, the adapter must still gain ``min_gain`` MRR@10 on the
    held-out queries of all the other sources: a token's own votes can move the adapter, but never vouch
    for it.
    """
    for source in sorted({ex.source for ex in train if ex.source}):
        others = [ex for ex in held if ex.source != source]
        if not others:
            return f"no held-out queries from anyone but token {source}"
        before = evaluate(current, others, ids, vectors)["mrr@10"]
        after = evaluate(matrix, others, ids, vectors)["mrr@10"]
        if after < before + min_gain:
            return f"without token {source}'s queries held-out MRR@10 goes {before:.4f} → {after:.4f}"
    return None


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def evaluate(
    matrix: np.ndarray | None, examples: list[Example], ids: list[str], vectors: np.ndarray, k: int = 10
) -> dict[str, float]:
    """MRR@k and recall@k of the positives under exact dense search over ``vectors`` (rows of ``ids``)."""
    if not examples:
        return {"mrr@10": 0.0, "recall@10": 0.0, "queries": 0}
    docs = _normalise(vectors.astype(np.float32))
    queries = np.stack([ex.query for ex in examples]).astype(np.float32)
    if matrix is not None:
        queries = queries @ matrix.T
    scores = _normalise(queries) @ docs.T
    top = np.argsort(-scores, axis=1)[:, :k]
    mrr = recall = 0.0
    for row, ex in zip(top, examples):
        found = [ids[i] for i in row]
        mrr += reciprocal_rank(found, set(ex.positives), k)
        recall += recall_at_k(found, set(ex.positives), k)
    return {"mrr@10": mrr / len(examples), "recall@10": recall / len(examples), "queries": len(examples)}


def train_matrix(
    examples: list[Example],
    vectors: dict[str, np.ndarray],
    init: np.ndarray | None = None,
    epochs: int = 40,
    lr: float = 5e-4,
    temperature: float = 0.05,
    reg: float = 1e-2,
    batch: int = 64,
    seed: int = 0,
    max_positives: int = 4,
) -> np.ndarray:
    """Fit ``W`` (init: identity) with InfoNCE over in-batch and hard negatives; returns float32 ``(d, d)``."""
    import torch

    pairs = [(ex, p) for ex in examples for p in ex.positives[:max_positives] if p in vectors]
    if not pairs:
        raise ConfigError("No feedback with a helpful chunk to learn from")
    dim = len(next(iter(vectors.values())))
    generator = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.tensor(init if init is not None else np.eye(dim), dtype=torch.float32))
    identity = torch.eye(dim)
    optimiser = torch.optim.Adam([w], lr=lr)
    doc = {cid: torch.tensor(_normalise(v.astype(np.float32))) for cid, v in vectors.items()}
    for _ in range(epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), batch):
            chunk = [pairs[i] for i in order[start : start + batch]]
            loss = _infonce(w, chunk, doc, temperature) + reg * ((w - identity) ** 2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return np.asarray(w.detach().numpy(), dtype=np.float32)


def _infonce(w, chunk, doc, temperature, max_negatives: int = 8):  # type: ignore[no-untyped-def]
    """Cross-entropy of each query against [batch positives ‖ its own hard negatives]. Another query's
    positive that is also positive for this query is masked rather than counted as a negative."""
    import torch

    queries = torch.stack([torch.tensor(ex.query, dtype=torch.float32) for ex, _ in chunk])
    adapted = torch.nn.functional.normalize(queries @ w.T, dim=-1)
    positives = torch.stack([doc[p] for _, p in chunk])
    in_batch = adapted @ positives.T / temperature
    mask = torch.tensor(
        [[pj in ex.positives and j != i for j, (_, pj) in enumerate(chunk)] for i, (ex, _) in enumerate(chunk)]
    )
    in_batch = in_batch.masked_fill(mask, float("-inf"))
    dim = positives.shape[1]
    hard = torch.zeros(len(chunk), max_negatives, dim)
    present = torch.zeros(len(chunk), max_negatives, dtype=torch.bool)
    for i, (ex, _) in enumerate(chunk):
        negs = [doc[n] for n in ex.negatives if n in doc][:max_negatives]
        if negs:
            hard[i, : len(negs)] = torch.stack(negs)
            present[i, : len(negs)] = True
    hard_logits = torch.einsum("bd,bnd->bn", adapted, hard) / temperature
    hard_logits = hard_logits.masked_fill(~present, float("-inf"))
    logits = torch.cat([in_batch, hard_logits], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(chunk)))


def fit(
    examples: list[Example],
    ids: list[str],
    vectors: np.ndarray,
    current: np.ndarray | None = None,
    min_examples: int = 20,
    min_gain: float = 0.005,
    heldout: float = 0.2,
    token_share: float = 1.0,
    **train_kw: float,
) -> FitResult:
    """Train on part of the examples; ``improved`` only if held-out MRR@10 beats the current adapter's, also
    without any single token's queries (see the module docstring); ``token_share`` caps each token's share."""
    usable = [ex for ex in examples if ex.positives]
    if len(usable) < min_examples:
        raise ConfigError(f"Only {len(usable)} judged queries with a helpful chunk; need at least {min_examples}")
    train, held = split(usable, heldout)
    if not held:  # tiny sets: hold out the last fifth in key order (hub-chosen, like the split itself)
        ordered = sorted(usable, key=lambda ex: ex.key)
        train, held = ordered[: -max(1, len(usable) // 5)], ordered[-max(1, len(usable) // 5) :]
    train, held = cap_sources(train, token_share), cap_sources(held, token_share)
    if len(train) + len(held) < min_examples or not train or not held:
        raise ConfigError(
            f"Only {len(train) + len(held)} judged queries left once each token is capped at {token_share:.0%} of "
            f"the data (setting hub_feedback_token_share); need at least {min_examples}, from more than one token "
            "or from `outpost hub feedback import`"
        )
    by_id = dict(zip(ids, vectors))
    matrix = train_matrix(train, by_id, **train_kw)  # type: ignore[arg-type]
    before = evaluate(current, held, ids, vectors)
    after = evaluate(matrix, held, ids, vectors)
    improved = after["mrr@10"] >= before["mrr@10"] + min_gain
    notes = []
    if improved and (why := independent_gain(matrix, current, train, held, ids, vectors, min_gain)):
        improved = False
        notes.append(why)
    log.info("adapter: held-out MRR@10 %.4f → %.4f (%s)", before["mrr@10"], after["mrr@10"], improved)
    return FitResult(matrix, before, after, len(train), len(held), improved, notes)
