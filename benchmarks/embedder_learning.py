"""The hub learns a better embedder: NFCorpus hybrid nDCG@10, plain vs linear adapter vs fine-tuned MiniLM.

Stages (each cached under ``benchmarks/.cache/embedder-learning/``; run them in order or let ``run`` do all):

- ``prepare``: the NFCorpus collection through the real ingest path (Markdown files → ``Outpost.ingest``).
- ``generate``: the bundled Gemma 3 270M writes one question per sampled chunk
  (``outpost.finetune.embedder.generate_questions``), cached, bounded by ``--max-chunks`` and ``--minutes``.
- ``generate-rate``: questions per second and kept questions per minute, the previous one-at-a-time generation
  against the batched one with its shared few-shot prefix, on the same chunks in one process.
- ``run``: trains the variants, re-embeds the corpus with each fine-tuned model, and prints every figure
  beside the plain hybrid and the linear adapter measured in the same run, split by test queries whose
  relevant documents the labelled training data touched vs never touched.

Run: ``nice -n 10 .venv/bin/python benchmarks/embedder_learning.py generate --max-chunks 3000 --minutes 60``
then ``nice -n 10 .venv/bin/python benchmarks/embedder_learning.py run``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers: never download

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from _common import (
    dump_json,
    ensure_cache_dir,
    load_corpus,
    load_qrels,
    load_queries,
    log,
    machine,
    table,
    write_markdown,
)
from outpost.adapt import fit, hash_share, split
from outpost.embed.factory import load_embedder
from outpost.finetune.embedder import (
    EmbedderTrainConfig,
    HybridIndex,
    Judged,
    Pair,
    candidate_index,
    gate,
    generate_questions,
    judge_pairs,
    judged_pairs,
    mine_pairs,
    rank_metrics,
    sample_passages,
    store_bm25,
    store_passages,
    train_embedder,
)
from outpost.learn import collection_vectors, qrels_examples
from outpost.store.sqlite import Store

COLLECTION = "nf"


def work_dir() -> Path:
    folder = ensure_cache_dir() / "embedder-learning"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def base_store() -> Store:
    """The plain NFCorpus collection (built through ``Outpost.ingest`` once; reused by every stage)."""
    collections = work_dir() / "base"
    if not (collections / COLLECTION / "store.sqlite").is_file():
        from outpost import Outpost

        docs = work_dir() / "docs"
        if not docs.exists():
            write_markdown(load_corpus(0), docs)
        log("ingesting NFCorpus (all 3,633 documents) through Outpost.ingest ...")
        home = work_dir() / "home"
        op = Outpost(home=home)
        op.ingest(str(docs), collection=COLLECTION)
        op.store(COLLECTION).close()  # release it before the folder moves
        (collections).mkdir(parents=True, exist_ok=True)
        (home / "collections" / COLLECTION).rename(collections / COLLECTION)
    store = Store.open(collections, COLLECTION)
    _check_vectors(store)
    return store


def _check_vectors(store: Store, probes: int = 8) -> None:
    """Refuse a collection whose stored vectors are not its chunks' embeddings (every figure would be wrong).

    Why: a store copied from another experiment once carried vectors that did not belong to its texts (cosine
    ≈ 0 to a fresh embedding): the plain baseline read 0.17 instead of 0.33 on dev.
    """
    passages = store_passages(store)
    ids, vectors = collection_vectors(store)
    index = {cid: i for i, cid in enumerate(ids)}
    sample = passages[:: max(1, len(passages) // probes)][:probes]
    fresh = load_embedder(_settings(), BASE_MODEL).embed([p.text for p in sample])
    stored = vectors[[index[p.id] for p in sample]]
    cosine = (fresh * stored).sum(1) / np.linalg.norm(stored, axis=1)
    # A store's own vectors measure ≥ 0.9999 (int8 rounding); misaligned is ≈ 0. (0.851 once: `store_passages`
    # read the raw heading column, NULL since store migration 4 when it is the document's title.)
    if float(cosine.min()) < 0.99:
        raise SystemExit(f"{store.folder}: stored vectors do not match their chunks (min cosine {cosine.min():.3f})")


def generator_path(name: str) -> Path:
    from outpost.models.resolve import resolve_model

    return resolve_model(work_dir() / "home", name).path


def cmd_generate(args: argparse.Namespace) -> None:
    store = base_store()
    passages = sample_passages(store_passages(store), args.max_chunks, seed=0)
    log(f"generating questions for {len(passages)} chunks with {args.generator} ({args.minutes} min budget)")
    started = time.monotonic()
    done = generate_questions(
        passages,
        generator_path(args.generator),
        work_dir() / "questions.jsonl",
        n_threads=args.threads,
        time_budget_s=args.minutes * 60,
    )
    log(f"{len(done)} usable questions cached ({time.monotonic() - started:.0f} s this run)")


BASE_MODEL = "all-MiniLM-L6-v2"


def plain_index(store: Store, base: Any) -> tuple[list[Any], dict[str, str], HybridIndex]:
    """The collection's passages, chunk id → document, and its plain hybrid: the stored vectors (unit rows) and
    the collection's BM25, queries embedded by ``base``."""
    passages = store_passages(store)
    ids, vectors = collection_vectors(store)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return (
        passages,
        {p.id: Path(p.doc).stem for p in passages},
        HybridIndex(ids, vectors, base.embed, store_bm25(store)),
    )


# The prompt question generation used before the few-shot prefix (one health example, one question at a time):
# the baseline `generate-rate` measures against.
ONE_SHOT = (
    "Article: Green tea and stroke. Green tea consumption was associated with a lower risk of stroke in a "
    "cohort of 80,000 Japanese adults.\nQuestion: Does drinking green tea lower the risk of stroke?\n\n"
)


def cmd_generate_rate(args: argparse.Namespace) -> None:
    """Questions per second and kept questions per minute: one prompt at a time (``LlamaCppModel``, the previous code
    path) against ``BatchCompleter`` with the shared few-shot prefix, on the same chunks, in one process.

    The chunks come from past the benchmark's own generation sample (``sample_passages`` order from ``--skip``),
    so this never reads questions the training uses. Kept = passes the consistency filter on the plain hybrid.
    """
    from outpost.finetune.embedder import (
        PROMPT_WORDS,
        QUESTION_EXAMPLES,
        QUESTION_PROMPT,
        QUESTION_TOKENS,
        _clean_question,
    )
    from outpost.llm.base import GenerationParams
    from outpost.llm.batch import BatchCompleter
    from outpost.llm.llamacpp import LlamaCppModel

    store = base_store()
    passages, chunk_doc, plain = plain_index(store, load_embedder(_settings(), BASE_MODEL))
    sample = sample_passages(passages, args.skip + args.chunks, seed=0)[args.skip :]
    prompts = [QUESTION_PROMPT.format(text=" ".join(p.text.split()[:PROMPT_WORDS])) for p in sample]
    path = generator_path(args.generator)

    def one_at_a_time(prefix: str) -> dict[int, str]:
        model = LlamaCppModel(path, n_ctx=512, n_threads=args.threads)
        params = GenerationParams(temperature=0.0, max_tokens=QUESTION_TOKENS, seed=0)
        return {i: "".join(model.stream_raw(prefix + p, params, stop=["\n"])) for i, p in enumerate(prompts)}

    def batched(prefix: str, slots: int) -> dict[int, str]:
        with BatchCompleter(path, slots=slots, n_threads=args.threads) as model:
            return dict(model.complete(prompts, prefix=prefix, max_tokens=QUESTION_TOKENS, stop="\n"))

    runs = {
        "one-shot prompt, one at a time (before)": lambda: one_at_a_time(ONE_SHOT),
        "three-shot prompt, one at a time": lambda: one_at_a_time(QUESTION_EXAMPLES),
        **{f"three-shot prefix shared, {n} slots": (lambda n=n: batched(QUESTION_EXAMPLES, n)) for n in args.slots},
    }
    rows, results = [], {}
    for label, run in runs.items():
        started = time.monotonic()
        replies = run()
        seconds = time.monotonic() - started
        questions = {sample[i].id: q for i, r in replies.items() if (q := _clean_question(r))}
        plain.prime(list(questions.values()))
        kept = len(mine_pairs(questions, chunk_doc, plain.search, k=10).pairs)
        results[label] = {"seconds": round(seconds, 1), "usable": len(questions), "kept": kept}
        rows.append([label, f"{len(prompts) / seconds:.2f}", len(questions), kept, f"{kept / seconds * 60:.1f}"])
        log(f"{label}: {rows[-1]}")
    before = results[next(iter(runs))]
    for row, result in zip(rows, results.values()):
        row.append(f"{(result['kept'] / result['seconds']) / (before['kept'] / before['seconds']):.2f}")
    print(table(rows, ["generation", "chunks/s", "usable", "kept", "kept/min", "× before"], left=1))
    print(dump_json({"chunks": len(prompts), "generator": args.generator, "runs": results, "machine": machine()}))


def _unit(chunk_doc: dict[str, str]) -> Any:
    return lambda cid: chunk_doc.get(cid, cid)


def _judged(qrels: dict[str, dict[str, int]], queries: dict[str, str]) -> dict[str, Judged]:
    return {q: Judged(queries[q], rel) for q, rel in qrels.items() if q in queries}


def _per_query(index: Any, judged: dict[str, Judged], unit: Any) -> dict[str, dict[str, float]]:
    """Query id → its nDCG@10 and MRR@10 (kept per query so that any subset can be averaged later)."""
    index.prime([j.query for j in judged.values()])
    return {q: rank_metrics(index.search, [j], unit) for q, j in judged.items()}


def _restricted(judged: dict[str, Judged], docs: set[str], keep: bool) -> dict[str, Judged]:
    """Each query's judgements restricted to the documents in ``docs`` (``keep``) or outside them; queries left
    with no relevant document drop out. Ranking is unchanged: a query is scored only on the part of its answers
    that the training data touched (or never touched)."""
    out = {}
    for q, j in judged.items():
        relevant = {d: g for d, g in j.relevant.items() if (d in docs) == keep}
        if any(g > 0 for g in relevant.values()):
            out[q] = Judged(j.query, relevant)
    return out


def _unseen_docs(docs: set[str], share: float) -> set[str]:
    """A seeded hash's ``share`` of the documents: the labelled training data never uses them (generalisation)."""
    if share <= 0:
        return set()
    return {d for d in docs if hash_share(f"unseen\0{d}") < share}


def _seen_only(ex: Any, chunk_doc: dict[str, str], unseen: set[str]) -> Any:
    """The example without chunks of unseen documents (as positives or negatives), or None if no positive is left."""
    from dataclasses import replace

    positives = tuple(c for c in ex.positives if chunk_doc.get(c) not in unseen)
    negatives = tuple(c for c in ex.negatives if chunk_doc.get(c) not in unseen)
    return replace(ex, positives=positives, negatives=negatives) if positives else None


def _mean(per: dict[str, dict[str, float]]) -> dict[str, float]:
    rows = list(per.values())
    return {k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in ("ndcg@10", "mrr@10")} | {"n": len(rows)}


def _config_key(config: EmbedderTrainConfig, pairs: list[Pair]) -> str:
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for p in pairs:
        digest.update(f"{p.query}\0{p.positive}\0{','.join(p.negatives)}\n".encode())
    return digest.hexdigest()[:16]


def _fine_tuned(
    name: str,
    pairs: list[Pair],
    texts: dict[str, str],
    config: EmbedderTrainConfig,
    passages: Any,
    bm25: Any,
    facts: dict[str, Any],
) -> HybridIndex:
    """Train (or reuse a cached model), then re-embed the corpus with it (or reuse cached vectors)."""
    folder = work_dir() / "models" / f"{name}-{_config_key(config, pairs)}"
    if not (folder / "config.json").is_file():
        log(f"{name}: training on {len(pairs)} pairs ({config}) ...")
        trained = train_embedder(BASE_MODEL, pairs, texts, folder, config)
        (folder / "outpost-train.json").write_text(
            json.dumps(
                {"steps": trained.steps, "pairs": trained.pairs, "seconds": trained.seconds, "losses": trained.losses}
            )
        )
    train_facts = json.loads((folder / "outpost-train.json").read_text())
    vectors_file = folder / "outpost-vectors.npy"
    embedder = load_embedder(_settings(), str(folder))  # the product's CPU path: the ONNX graph, probe-checked
    if vectors_file.is_file():
        index = HybridIndex([p.id for p in passages], np.load(vectors_file), embedder.embed, bm25)
        embed_s = json.loads((folder / "outpost-embed.json").read_text())["seconds"]
    else:
        log(f"{name}: re-embedding {len(passages)} chunks ...")
        started = time.monotonic()
        index = candidate_index(embedder, passages, bm25)
        embed_s = time.monotonic() - started
        np.save(vectors_file, index.vectors)
        (folder / "outpost-embed.json").write_text(json.dumps({"seconds": embed_s}))
    facts[name] = {
        "model": str(folder),
        "train_pairs": train_facts["pairs"],
        "steps": train_facts["steps"],
        "train_s": round(train_facts["seconds"], 1),
        "reembed_s": round(embed_s, 1),
        "first_loss": round(train_facts["losses"][0], 4),
        "last_loss": round(train_facts["losses"][-1], 4),
    }
    return index


def _cached_questions(args: argparse.Namespace, passages: list[Any]) -> dict[str, str]:
    """Chunk id → generated question, for the ``--max-chunks`` sample, from the ``generate`` stage's cache only."""
    return generate_questions(
        sample_passages(passages, args.max_chunks, seed=0),
        generator_path(args.generator),
        work_dir() / "questions.jsonl",
        time_budget_s=0,
    )


def _judge(
    args: argparse.Namespace,
    questions: dict[str, str],
    texts: dict[str, str],
    chunk_doc: dict[str, str],
    plain: HybridIndex,
) -> Any:
    """The first ``--judge`` generated questions (sampling order) labelled by the generator as judge
    (``judge_pairs``: its candidates from the plain hybrid), scores cached in ``judged.jsonl``."""
    chosen = dict(list(questions.items())[: args.judge])
    started = time.monotonic()
    mined = judge_pairs(
        chosen,
        texts,
        chunk_doc,
        plain.search,
        generator_path(args.generator),
        candidates=args.judge_candidates,
        margin=args.judge_margin,
        cache=work_dir() / "judged.jsonl",
        n_threads=args.threads,
    )
    log(f"judged {len(chosen)} questions in {time.monotonic() - started:.0f} s: {len(mined.pairs)} kept")
    return mined


def _judge_gaps(
    args: argparse.Namespace,
    chosen: dict[str, str],
    texts: dict[str, str],
    chunk_doc: dict[str, str],
    plain: HybridIndex,
) -> tuple[list[float], int]:
    """For kept questions, how many nats likelier the judge finds the own chunk than each candidate (read from the
    score cache, candidates as ``judge_pairs`` draws them); and how many questions miss their own chunk in the
    hybrid's top 30."""
    from outpost.finetune.embedder import _judge_key, _read_cache, judge_candidates

    scores = _read_cache(work_dir() / "judged.jsonl", "score", float)
    name = generator_path(args.generator).name
    gaps: list[float] = []
    for cid, (own, *others) in judge_candidates(chosen, chunk_doc, plain.search, args.judge_candidates).items():
        mine = scores[_judge_key(name, texts[own], chosen[cid])]
        row = [mine - scores[_judge_key(name, texts[c], chosen[cid])] for c in others]
        if row and min(row) > 0:
            gaps += row
    missed = sum(cid not in plain.search(question, 30) for cid, question in chosen.items())
    return gaps, missed


def cmd_judge(args: argparse.Namespace) -> None:
    """Score the first ``--judge`` generated questions against their candidates (cached for ``run --judge``), and
    say how many the judge keeps, beside the consistency filter on the same questions."""
    store = base_store()
    passages, chunk_doc, plain = plain_index(store, load_embedder(_settings(), BASE_MODEL))
    texts = {p.id: p.text for p in passages}
    cached = _cached_questions(args, passages)
    chosen = dict(list(cached.items())[: args.judge])
    plain.prime(list(chosen.values()))
    mined = _judge(args, chosen, texts, chunk_doc, plain)
    consistent = mine_pairs(chosen, chunk_doc, plain.search, k=args.consistency_k, negatives=3)
    negatives = [len(p.negatives) for p in mined.pairs]
    gaps, missed = _judge_gaps(args, chosen, texts, chunk_doc, plain)
    print(
        dump_json(
            {
                "questions": len(chosen),
                "judge_kept": len(mined.pairs),
                "judge_negatives_mean": float(np.mean(negatives)) if negatives else 0.0,
                "consistency_kept": len(consistent.pairs),
                "both_kept": len({p.positive for p in mined.pairs} & {p.positive for p in consistent.pairs}),
                "own_chunk_missing_from_hybrid_top30": round(missed / max(1, len(chosen)), 4),
                "kept_gap_nats_percentiles_10_25_50_75": [
                    round(float(x), 2) for x in np.percentile(gaps, [10, 25, 50, 75])
                ]
                if gaps
                else [],
                "kept_gaps_at_least_1_3_5_nats": [round(float(np.mean(np.array(gaps) >= m)), 3) for m in (1, 3, 5)]
                if gaps
                else [],
            }
        )
    )


def _settings() -> Any:
    from outpost.settings import Settings

    return Settings(home=work_dir() / "home")


def cmd_run(args: argparse.Namespace) -> None:
    import torch

    from outpost.cpus import usable_cpus

    if os.getloadavg()[0] > usable_cpus():  # oversubscribed: torch's barriers wait on descheduled threads
        torch.set_num_threads(1)  # (the adapter's fit, like train_embedder, then runs many times faster)
    info = machine()
    store = base_store()
    base = load_embedder(_settings(), BASE_MODEL)
    passages, chunk_doc, plain = plain_index(store, base)
    ids, vectors, bm25 = plain.ids, plain.vectors, plain.bm25
    texts = {p.id: p.text for p in passages}
    unit = _unit(chunk_doc)
    queries = load_queries()
    train_qrels = {q: r for q, r in load_qrels("train").items() if q in queries}
    evals = {s: _judged({q: r for q, r in load_qrels(s).items() if q in queries}, queries) for s in args.splits}

    # labelled examples: the hub's own code (learn.qrels_examples), split 80/20 like the adapter's gate
    log("building labelled examples from the train qrels ...")
    examples = qrels_examples(store, base, train_qrels, queries)
    unseen = _unseen_docs(set(chunk_doc.values()), args.unseen_docs)
    if unseen:  # the generalisation probe: labelled data never touches these documents
        examples = [e for e in (_seen_only(ex, chunk_doc, unseen) for ex in examples) if e is not None]
        log(f"{len(unseen)} documents held out of the labelled data: {len(examples)} examples left")
    train_ex, held_ex = split(examples, 0.2)
    held = [Judged(queries[ex.key], train_qrels[ex.key]) for ex in held_ex]
    labelled = judged_pairs(((queries[ex.key], ex.positives, ex.negatives) for ex in train_ex), args.per_query)
    touched_docs = {chunk_doc[c] for ex in train_ex for c in ex.positives if c in chunk_doc}

    # generated questions (cached by the generate stage), filtered and mined on the plain index
    cached = _cached_questions(args, passages)
    plain.prime(list(cached.values()))
    if args.judge:
        mined = _judge(args, cached, texts, chunk_doc, plain)
        log(f"generated: {args.judge} of {len(cached)} questions judged, {len(mined.pairs)} kept (own chunk best)")
    else:
        mined = mine_pairs(cached, chunk_doc, plain.search, k=args.consistency_k, negatives=3)
        log(f"generated: {len(cached)} questions, {len(mined.pairs)} kept (own chunk in top {args.consistency_k})")

    variants: dict[str, Any] = {"plain hybrid": plain}
    facts: dict[str, Any] = {}
    if not args.skip_adapter:
        # the linear adapter, trained exactly as `outpost eval --adapter-from train` trains it
        log("fitting the linear adapter ...")
        started = time.monotonic()
        fitted = fit(examples, ids, vectors, None, min_gain=0.0)
        facts["linear adapter"] = {"train_s": round(time.monotonic() - started, 1), "examples": fitted.train_examples}
        matrix = fitted.matrix

        def adapted(texts_: list[str]) -> np.ndarray:
            q = base.embed(texts_) @ matrix.T
            return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)

        variants["hybrid + linear adapter"] = HybridIndex(ids, vectors, adapted, bm25)
    config = EmbedderTrainConfig(
        max_steps=args.steps,
        batch_size=args.batch,
        max_seq_length=args.max_seq_length,
        learning_rate=args.lr,
        negatives_per_pair=args.negatives,
        freeze_embeddings=args.freeze_embeddings,
    )
    runs = {"fine-tuned (qrels + generated)": labelled + mined.pairs, "fine-tuned (generated only)": mined.pairs}
    for name in filter(None, args.variants.split(",")):
        label = list(runs)[int(name)]
        variants[label] = _fine_tuned(
            label.split()[1].strip("()").replace("+", ""), runs[label], texts, config, passages, bm25, facts
        )
        facts[label.split(" ", 1)[1]] = facts.pop(label.split()[1].strip("()").replace("+", ""))

    results: dict[str, Any] = {
        "machine": info,
        "settings": vars(args),
        "facts": facts,
        "generated": {
            "questions": len(cached),
            "kept": len(mined.pairs),
            "docs_with_questions": len({chunk_doc[c] for c in cached}),
        },
        "labelled_pairs": len(labelled),
        "unseen_docs": len(unseen),
        "touched_docs": len(touched_docs),
        "heldout_queries": len(held),
    }
    gates = {}
    for label, index in variants.items():
        if label != "plain hybrid":
            gates[label] = gate(plain.search, index.search, held, unit=unit)
    results["gate"] = {k: {"before": g.before, "after": g.after, "passes": g.improved} for k, g in gates.items()}
    rows = []
    for split_name, judged in evals.items():
        parts = {
            "all": judged,
            "touched": _restricted(judged, touched_docs, True),
            "untouched": _restricted(judged, touched_docs, False),
        }
        results[split_name] = {}
        for label, index in variants.items():
            row = {part: _mean(_per_query(index, j, unit)) for part, j in parts.items()}
            results[split_name][label] = row
            base_row = results[split_name]["plain hybrid"]
            rows.append(
                [split_name, label]
                + [
                    f"{row[part]['ndcg@10']:.4f} ({row[part]['ndcg@10'] - base_row[part]['ndcg@10']:+.4f})"
                    for part in ("all", "touched", "untouched")
                ]
                + [f"{row['all']['mrr@10']:.4f}", f"{row['touched']['n']}/{row['untouched']['n']}"]
            )
    if args.json:
        print(dump_json(results))
        return
    print(
        table(
            rows,
            ["split", "retrieval", "nDCG@10 all (Δ plain)", "touched", "untouched", "MRR@10", "queries t/u"],
            left=2,
        )
    )
    print(
        dump_json(
            {k: results[k] for k in ("facts", "generated", "labelled_pairs", "heldout_queries", "gate", "machine")}
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("generate", help="generate questions for sampled chunks (cached)")
    gen.add_argument("--generator", default="gemma3-270m")
    gen.add_argument("--max-chunks", type=int, default=3000)
    gen.add_argument("--minutes", type=float, default=60.0)
    gen.add_argument("--threads", type=int, default=2)
    rate = sub.add_parser("generate-rate", help="questions/s and kept questions/s: one at a time vs batched")
    rate.add_argument("--generator", default="gemma3-270m")
    rate.add_argument("--chunks", type=int, default=96)
    rate.add_argument("--skip", type=int, default=6000, help="start this far into the sampling order")
    rate.add_argument("--threads", type=int, default=2)
    rate.add_argument("--slots", type=int, nargs="+", default=[8, 16])
    run = sub.add_parser("run", help="train, re-embed and measure every variant (cached stages reused)")
    run.add_argument("--splits", nargs="+", default=["dev"], help="dev while tuning; test once, at the end")
    run.add_argument("--variants", default="0,1", help="0: qrels + generated, 1: generated only")
    run.add_argument("--generator", default="gemma3-270m")
    run.add_argument("--max-chunks", type=int, default=3633)
    run.add_argument("--consistency-k", type=int, default=10)
    run.add_argument("--per-query", type=int, default=4, help="positive chunks per labelled query")
    run.add_argument("--steps", type=int, default=150)
    run.add_argument("--batch", type=int, default=32)
    run.add_argument("--max-seq-length", type=int, default=128)
    run.add_argument("--lr", type=float, default=2e-5)
    run.add_argument("--negatives", type=int, default=1)
    run.add_argument("--freeze-embeddings", action="store_true")
    run.add_argument("--skip-adapter", action="store_true", help="leave the linear adapter out (measured elsewhere)")
    run.add_argument(
        "--unseen-docs", type=float, default=0.0, help="share of documents the labelled training data never uses"
    )
    run.add_argument("--json", action="store_true")
    judge = sub.add_parser("judge", help="label generated questions with the generator as judge (cached)")
    for command in (run, judge):
        command.add_argument(
            "--judge",
            type=int,
            default=0,
            help="label the first N generated questions with the generator as "
            "judge in place of the consistency filter (0: the filter)",
        )
        command.add_argument("--judge-candidates", type=int, default=4)
        command.add_argument("--judge-margin", type=float, default=1.0)
        command.add_argument("--threads", type=int, default=2)
    judge.add_argument("--generator", default="gemma3-270m")
    judge.add_argument("--max-chunks", type=int, default=5000)
    judge.add_argument("--consistency-k", type=int, default=10)
    args = parser.parse_args(argv)
    commands = {"generate": cmd_generate, "generate-rate": cmd_generate_rate, "run": cmd_run, "judge": cmd_judge}
    commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
