"""Answer quality of the bundled chat models on SQuAD v1.1 dev, through ``Outpost.ask``, with and without grounding.

Every paragraph of SQuAD v1.1 dev is ingested as one document of one collection (2,067 paragraphs, cached in
``benchmarks/.cache/answers-home``); each sampled question is asked through the real answering path
(retrieve → pack → generate → ground), greedy decoding. For each configuration (model × prompt × sources in
the prompt) it prints SQuAD's official metrics — exact match, token F1 — and "the answer contains a gold
span" (official normalisation: lowercase, no punctuation or articles; citations like ``[1]`` removed first),
for:

- ``model``: the model's reply as generated (grounding check off),
- ``checked``: what Outpost shows with the check on (an answer with no supported sentence is replaced by the
  best evidence sentence),
- ``extractive``: the best evidence sentence alone, no LLM (the baseline measured in the same run),

plus the share of questions whose own paragraph was among the sources ("retrieved"), the metrics on that
subset, the share of wrong replies that the grounding check flagged (a reply is wrong when it contains no
gold span), the share of right replies it flagged (false alarms), and the check's median cost in ms.

Questions are sampled as whole paragraphs (all of a paragraph's questions, paragraphs shuffled with seed 0)
and split in two disjoint parts: ``--split dev`` is the questions of the first paragraphs (at least
``DEV_QUESTIONS``), where prompts and the check's thresholds are tuned; ``--split test`` is the questions of
the paragraphs after them, reported once. A run of N questions is a prefix of a run of more. Every
configuration answers question 1, then every configuration question 2, and so on, so a run stopped early
(``--until``) leaves every configuration with the same questions. Generated replies are cached per
(configuration, question) in ``benchmarks/.cache/answers-<config>.jsonl``; ``--cached`` makes the table from
the questions every configuration has cached, generating nothing.

A configuration is ``model:prompt:k[:sentences]``: k chunks retrieved, and ``sentences`` > 0 (default: the
``prompt_sentences`` setting) puts only that many best evidence sentences in the prompt instead of the chunks
(extractive-first); ``extractive::k`` is the best evidence sentence alone, no LLM.

    python benchmarks/answers.py --split dev --limit 100           # explore: every configuration
    python benchmarks/answers.py --split test --limit 500 --configs gemma3-270m:default:5,extractive::5
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import random
import re
import statistics
import string
import sys
import time

from _common import CACHE_DIR, REPO  # noqa: F401  (sets the offline switches first)
from outpost import Outpost, evidence
from outpost.rag import SYSTEM_PROMPT, ground_answer
from outpost.records import Answer, Source
from outpost.settings import Settings

SQUAD = REPO.parent / "shared" / "datasets" / "squad_v1.1_dev" / "dev-v1.1.json"
HOME = CACHE_DIR / "answers-home"
COLLECTION = "squad"

PROMPTS = {
    "default": SYSTEM_PROMPT,
    "cite": (
        "You are a careful assistant for an organisation's internal documents. Answer the question "
        "using only the numbered sources. Cite every fact with its source number in square brackets, "
        "like [1]. If the sources do not contain the answer, say that you don't know. Be concise."
    ),  # the default until issue 16's second pass
    "short": (
        "Answer the question from the numbered sources in one short sentence, then cite the source "
        "like [1]. If the sources do not say, answer: I don't know."
    ),
    "span": "Reply with the shortest phrase from the sources that answers the question, and nothing else.",
    "brief": "Answer the question in a few words, using only the sources.",
}
DEV_QUESTIONS = 200  # the dev split: the questions of the first shuffled paragraphs, at least this many
# model:prompt:k (k = sources in the prompt); "extractive" needs no model or prompt.
DEFAULT_CONFIGS = [
    "smollm2:default:3",
    "smollm2:short:1",
    "smollm2:span:1",
    "gemma3-270m:default:3",
    "gemma3-270m:default:1",
    "gemma3-270m:short:1",
    "gemma3-270m:span:1",
    "extractive::3",
]


# -- SQuAD's official normalisation and metrics (evaluate-v1.1.py) ----------------------------------------


def normalize(text: str) -> str:
    text = re.sub(r"\[\d+(?:\s*,\s*\d+)*\]", " ", text)  # citations are not part of the answer
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def scores(prediction: str, golds: list[str]) -> dict[str, float]:
    norm = normalize(prediction)
    return {
        "em": max(float(norm == normalize(g)) for g in golds),
        "f1": max(f1(prediction, g) for g in golds),
        "contains": max(float(bool(normalize(g)) and f" {normalize(g)} " in f" {norm} ") for g in golds),
    }


# -- data ------------------------------------------------------------------------------------------------


def paragraphs() -> list[tuple[str, str, list[dict]]]:
    """(document key, paragraph text, its questions) for every paragraph of SQuAD dev."""
    data = json.loads(SQUAD.read_text())["data"]
    return [
        (f"{a['title'][:60]}-{i:03d}.txt", p["context"], p["qas"]) for a in data for i, p in enumerate(a["paragraphs"])
    ]


def ensure_collection(op: Outpost, paras: list[tuple[str, str, list[dict]]]) -> None:
    """Write each paragraph to a file and ingest them all once (the home is cached between runs)."""
    folder = CACHE_DIR / "squad-paragraphs"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for key, text, _ in paras:
            (folder / re.sub(r"[^A-Za-z0-9._-]", "_", key)).write_text(text + "\n")
    if any(c.name == COLLECTION for c in op.collections()):
        return
    started = time.perf_counter()
    report = op.ingest(folder, collection=COLLECTION)
    print(f"ingested {len(report.added)} paragraphs in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def sample(paras: list[tuple[str, str, list[dict]]], limit: int, split: str = "dev") -> list[dict]:
    """The first ``limit`` questions of ``split``, whole paragraphs at a time (paragraphs shuffled, seed 0)."""
    order = list(range(len(paras)))
    random.Random(0).shuffle(order)
    seen = 0
    for n, i in enumerate(order):  # the dev split ends with the paragraph that reaches DEV_QUESTIONS
        seen += len(paras[i][2])
        if seen >= DEV_QUESTIONS:
            order = order[: n + 1] if split == "dev" else order[n + 1 :]
            break
    out: list[dict] = []
    for i in order:
        key, _, qas = paras[i]
        doc = re.sub(r"[^A-Za-z0-9._-]", "_", key)
        out += [
            {"id": q["id"], "question": q["question"], "golds": [a["text"] for a in q["answers"]], "doc": doc}
            for q in qas
        ]
        if len(out) >= limit:
            return out[:limit]
    return out


# -- running ---------------------------------------------------------------------------------------------


class Config:
    """One ``model:prompt:k[:sentences]`` configuration: its own ``Outpost`` (settings) and reply cache."""

    def __init__(self, spec: str, max_tokens: int, threads: int | None) -> None:
        self.spec = spec
        model, prompt, k, *rest = spec.split(":")
        self.model, self.system, self.k = model, PROMPTS.get(prompt, SYSTEM_PROMPT), int(k)
        sentences = int(rest[0]) if rest else Settings().prompt_sentences
        self.spec = f"{model}:{prompt}:{k}:{sentences}"  # the default spelled out: a later default is another cache
        self.op = Outpost(home=HOME, n_ctx=2048, n_threads=threads, prompt_sentences=sentences)
        self.max_tokens = max_tokens
        self.cache = CACHE_DIR / f"answers-{self.spec.replace(':', '_')}.jsonl"
        lines = self.cache.read_text().splitlines() if self.cache.is_file() else []
        self.done: dict[str, dict] = {r["id"]: r for r in map(json.loads, lines)}
        self.seconds: list[float] = []

    def answer(self, q: dict) -> dict:
        """The cached row for question ``q``, or a new one asked through ``Outpost.ask`` and cached."""
        if q["id"] in self.done:
            return self.done[q["id"]]
        t0 = time.perf_counter()
        extractive = self.model == "extractive"
        answer = self.op.ask(
            q["question"],
            COLLECTION,
            k=self.k,
            model=None if extractive else self.model,
            extractive=extractive,
            system=self.system,
            temperature=0.0,
            max_tokens=self.max_tokens,
            seed=0,
        )
        row = {
            "id": q["id"],
            "question": q["question"],
            "model": answer.model,
            "generated": answer.generated,
            "shown": answer.text,
            "grounding": answer.grounding,
            "grounding_ms": answer.grounding_ms,
            "confidence": answer.confidence,
            "retrieved": any(s.document == q["doc"] for s in answer.sources),
            "sources": [[s.number, s.document, s.chunk_id, s.text] for s in answer.sources],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        with self.cache.open("a") as out:
            out.write(json.dumps(row) + "\n")
        self.done[q["id"]] = row
        self.seconds.append(row["seconds"])
        return row


def run(configs: list[Config], questions: list[dict], until: datetime.datetime | None) -> list[dict]:
    """Every configuration answers each question in turn; stops (with equal questions) at ``until``."""
    asked: list[dict] = []
    for n, q in enumerate(questions, start=1):
        if until is not None and datetime.datetime.now(datetime.UTC) >= until:
            print(f"stopped at {until:%H:%M} UTC after {len(asked)} questions", file=sys.stderr, flush=True)
            break
        for config in configs:
            config.answer(q)
        asked.append(q)
        if n % 10 == 0:
            rates = ", ".join(f"{c.spec} {statistics.fmean(c.seconds):.1f}" for c in configs if c.seconds)
            print(f"  {n}/{len(questions)} questions; s/question: {rates}", file=sys.stderr, flush=True)
    return asked


def regrade(op: Outpost, row: dict) -> dict:
    """Re-run evidence and grounding on a cached reply with the current code, so a change to the check is
    measured without generating again (generation is what costs minutes here; the check costs ms)."""
    if "sources" not in row:
        return row
    sources = [Source(n, doc, chunk, 0.0, text) for n, doc, chunk, text in row["sources"]]
    answer = Answer(
        row["question"], row["generated"], sources, row["model"], COLLECTION, generated=row["generated"],
        confidence=row.get("confidence"),
    )  # fmt: skip
    ground_answer(answer, op.embedder())
    return {**row, "shown": answer.text, "grounding": answer.grounding, "grounding_ms": answer.grounding_ms}


SWEEP = {  # the check's settings tried on the dev split (evidence.py's module constants); the gap check's
    # GAP_FIT (0.3–0.55, since removed), ON_TOPIC_MARGIN, MIN_SIMILARITY and earlier sweeps are in docs/benchmarks.md
    "MIN_CONFIDENCE": [0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55],
}


def sweep(op: Outpost, configs: list[Config], questions: list[dict]) -> list[dict[str, object]]:
    """Regrade the cached replies under every combination of ``SWEEP``: the dev split's calibration table."""
    import itertools

    saved = {name: getattr(evidence, name) for name in SWEEP}
    out: list[dict[str, object]] = []
    try:
        for values in itertools.product(*SWEEP.values()):
            setting = dict(zip(SWEEP, values))
            for name, value in setting.items():
                setattr(evidence, name, value)
            for config in configs:
                if config.model == "extractive":
                    continue
                rows = [regrade(op, config.done[q["id"]]) for q in questions]
                r = summarise(config.spec, questions, rows)
                keep = ("checked_contains", "checked_contains_retrieved", "wrong_flagged", "right_flagged")
                out.append({**setting, "config": config.spec, **{k: round(float(r[k]), 3) for k in keep}})
                print(json.dumps(out[-1]), flush=True)
    finally:
        for name, value in saved.items():
            setattr(evidence, name, value)
    return out


def summarise(config: str, questions: list[dict], rows: list[dict]) -> dict[str, object]:
    golds = {q["id"]: q["golds"] for q in questions}
    extractive = config.startswith("extractive")

    def mean(key: str, field: str, subset: list[dict]) -> float:
        return statistics.fmean(scores(r[field], golds[r["id"]])[key] for r in subset) if subset else float("nan")

    field = "shown" if extractive else "generated"
    retrieved = [r for r in rows if r["retrieved"]]
    wrong = [r for r in rows if not scores(r["generated"], golds[r["id"]])["contains"]] if not extractive else []
    right = [r for r in rows if r not in wrong] if not extractive else []

    def flagged(subset: list[dict]) -> float:
        return sum(r["grounding"] == "unsupported" for r in subset) / len(subset) if subset else float("nan")

    return {
        "config": config,
        "n": len(rows),
        "retrieved": sum(r["retrieved"] for r in rows) / len(rows),
        "em": mean("em", field, rows),
        "f1": mean("f1", field, rows),
        "contains": mean("contains", field, rows),
        "contains_retrieved": mean("contains", field, retrieved),
        "checked_em": mean("em", "shown", rows),
        "checked_f1": mean("f1", "shown", rows),
        "checked_contains": mean("contains", "shown", rows),
        "checked_contains_retrieved": mean("contains", "shown", retrieved),
        "wrong_flagged": flagged(wrong),
        "right_flagged": flagged(right),
        "check_ms_p50": statistics.median(r["grounding_ms"] for r in rows),
        "seconds_p50": statistics.median(r["seconds"] for r in rows),
    }


def check_cost(op: Outpost, rows: list[dict], repeats: int = 3) -> dict[str, float]:
    """The grounding check's cost against a baseline in the same process: embedding the question alone
    (what retrieval already pays per question). Cold: the source-sentence cache emptied first; warm: the
    same sources again (a follow-up question on the same chunks)."""
    embedder = op.embedder()
    cold, warm, query = [], [], []
    for row in [r for r in rows if r.get("sources") and r["generated"]][:20]:
        sources = [Source(n, doc, chunk, 0.0, text) for n, doc, chunk, text in row["sources"]]
        for _ in range(repeats):
            evidence._SENTENCE_VECTORS.vectors.clear()
            t0 = time.perf_counter()
            evidence.ground(row["question"], row["generated"], sources, embedder)
            t1 = time.perf_counter()
            evidence.ground(row["question"], row["generated"], sources, embedder)
            t2 = time.perf_counter()
            embedder.embed_query(row["question"])
            t3 = time.perf_counter()
            cold.append((t1 - t0) * 1000)
            warm.append((t2 - t1) * 1000)
            query.append((t3 - t2) * 1000)
    return {
        "check_cold_ms_p50": statistics.median(cold),
        "check_warm_ms_p50": statistics.median(warm),
        "query_embedding_ms_p50": statistics.median(query),
        "samples": len(cold),
    }


def table(results: list[dict[str, object]]) -> str:
    head = (
        "| model:prompt:k:sentences | n | own ¶ retrieved | EM | F1 | contains gold | contains (own ¶ retrieved) "
        "| checked: EM | F1 | contains | contains (own ¶) | wrong flagged | right flagged | check ms p50 | s/question |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in results:
        cells = [r["config"], r["n"]] + [
            f"{r[k]:.3f}" if isinstance(r[k], float) else r[k]
            for k in (
                "retrieved", "em", "f1", "contains", "contains_retrieved", "checked_em", "checked_f1",
                "checked_contains", "checked_contains_retrieved", "wrong_flagged", "right_flagged",
            )
        ]  # fmt: skip
        cells += [f"{r['check_ms_p50']:.0f}", f"{r['seconds_p50']:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=100, help="questions (whole paragraphs, seed 0)")
    parser.add_argument("--split", choices=["dev", "test"], default="dev", help="dev: tune here; test: report")
    parser.add_argument("--until", help="HH:MM (UTC): stop asking new questions then")
    parser.add_argument("--cached", action="store_true", help="no generation: the questions all configs cached")
    parser.add_argument("--sweep", action="store_true", help="dev only: regrade under every SWEEP setting")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="model:prompt:k, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cost", action="store_true", help="also time the check against a query embedding")
    args = parser.parse_args()

    if args.threads:  # torch too: oversubscribed cores slow a 2-thread pool far more than they slow 1 thread
        import torch

        torch.set_num_threads(args.threads)
    configs = [Config(spec, args.max_tokens, args.threads) for spec in args.configs.split(",")]
    op = configs[0].op
    paras = paragraphs()
    ensure_collection(op, paras)
    questions = sample(paras, args.limit, args.split)
    if args.cached:
        questions = [q for q in questions if all(q["id"] in c.done for c in configs)]
    until = None
    if args.until:
        now = datetime.datetime.now(datetime.UTC)
        hour, minute = map(int, args.until.split(":"))
        until = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    questions = run(configs, questions, until)
    if args.sweep:
        if args.split != "dev":
            parser.error("--sweep calibrates the check: on the dev split only, never on the reported one")
        sweep(op, configs, questions)
        return
    results, generated = [], []
    for config in configs:
        rows = [regrade(op, config.done[q["id"]]) for q in questions]
        generated = generated or ([] if config.model == "extractive" else rows)  # the first model's, for --cost
        results.append(summarise(config.spec, questions, rows))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2) if args.json else table(results))
    if args.cost:
        print(json.dumps(check_cost(op, generated)))


if __name__ == "__main__":
    main()
