"""Evidence and grounding: which source sentences back an answer, and which answer sentences the sources back.

Two questions a reader of a generated answer should be able to settle without re-reading every source:

- **Evidence** — which sentences of the sources best support this answer? Each source sentence is scored
  by the collection's own embedder (cosine to the question and to the answer's supported sentences) and by
  lexical overlap (how many of their key terms, numbers and names it contains). The best few are the
  answer's evidence; with no LLM at all, they *are* the answer (:func:`extractive_answer`).
- **Grounding** — is each sentence of the answer supported by the sources it cites (all the sources in
  the prompt if it cites none)? Its numbers, dates and names must appear in one place in those sources,
  most of its key terms too, and that place must say the same thing (embedder similarity). Support is
  *local* — checked against one source sentence and its neighbour, not the whole source — because a
  small model's typical mistake is a real phrase from the right source that answers something else.
  For the same reason an answer must rest on a sentence that answers the question itself, and must give
  what the question's wording asks for (a number to "how many", a name to "who", a time to "when").
- **Confidence** — a faithful phrase can still be the wrong one, and the sources alone cannot always tell.
  The model that wrote the answer can: when a runtime reports its tokens' probabilities (llama.cpp does),
  an answer the model gave at a geometric-mean token probability under ``MIN_CONFIDENCE`` is marked — on
  SQuAD, Gemma 3 270M's wrong replies mostly come out that unsure and its right ones mostly do not
  (docs/benchmarks.md, answers: the fourth pass).

Both run after generation for every caller alike (``AnswerStream``), and cost one batched embedder call
(``benchmarks/answers.py`` reports the milliseconds). The embedder is passed in — the same loaded
instance that retrieval uses — so this module needs no model of its own.

    >>> result = ground(question, answer_text, sources, embedder)
    >>> result.status, [c.supported for c in result.claims], result.evidence[0].text
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from outpost.embed.base import Embedder
from outpost.records import Claim, Evidence, Source

__all__ = [
    "Grounding",
    "MARGIN",
    "MIN_CONFIDENCE",
    "MIN_SIMILARITY",
    "MIN_TERM_COVERAGE",
    "extractive_answer",
    "find_evidence",
    "ground",
    "split_sentences",
    "strip_citations",
]

# A claim is supported when one sentence of its sources holds all its numbers and names, at least this share of
# its other key terms, says the same thing at least this similarly (all-MiniLM-L6-v2 cosine), and is within
# MARGIN of the sentence closest to the claim (calibrated on SQuAD dev with benchmarks/answers.py).
MIN_TERM_COVERAGE = 0.5
MIN_SIMILARITY = 0.35
MARGIN = 0.1
EVIDENCE_COUNT = 3  # sentences shown under an answer
ON_TOPIC = 3  # an answer must rest on one of the sentences that best answer the question alone …
ON_TOPIC_MARGIN = 0.1  # … and score within this of the best one (dev split: 0.1 flagged more wrong replies than 0.25)
MIN_CONFIDENCE = 0.45  # the model's geometric-mean token probability for its reply (dev split: see the module doc)
SHORT_CLAIM_TERMS = 5  # a claim with fewer key terms is a fragment ("20 days"): read it with its question

# What a question asks for, when its wording says so plainly: an answer with no number to "how many" or no
# name to "who" answers something else, however faithful its words are to the sources.
_ASKS_NUMBER = re.compile(r"\b(?:how (?:many|much|old)|(?:what|which) (?:year|percentage|percent))\b", re.I)
_ASKS_NAME = re.compile(r"^\W*(?:who|whom|whose|where)\b", re.I)  # a person, or a place: named
_ASKS_TIME = re.compile(r"^\W*when\b", re.I)
_TIME_TEXT = """century centuries decade decades year years month months week weeks day days ago age era period
    season spring summer autumn fall winter morning evening night"""
_TIME_WORDS = frozenset(_TIME_TEXT.split())
_KIND_WORDS = {"number": "a number", "name": "a name", "time": "a date or time"}

_CITATION = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,:]\d+)*%?")
# A sentence ends at . ! ? followed by space and a capital, digit or opening mark; common abbreviations and
# initials ("e.g.", "Dr.", "J. Smith") do not end one.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS = {"e.g", "i.e", "dr", "mr", "mrs", "ms", "st", "vs", "etc", "no", "fig", "inc", "ltd", "jr", "sr"}
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*•>]\s+|\d+[.)]\s+|\|)")
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000",
}  # fmt: skip
_STOPWORD_TEXT = """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves may might must
    shall per via yes no answer answers answered source sources according based question questions text context
    following given says said say states stated mentioned there's it's don't doesn't isn't aren't i'm
    know cannot unknown information provided many much get got"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass
class Grounding:
    """What :func:`ground` found: per-sentence claims, the best evidence, and a one-word verdict.

    ``status`` is ``supported`` (every claim supported), ``partial`` (some), ``unsupported`` (none, or the
    answer states nothing the sources say) or ``unchecked`` (no sources to check against).
    """

    claims: list[Claim] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    status: str = "unchecked"
    ms: float = 0.0
    unsure: bool = False  # unsupported only because its model was unsure of it: the sources hold its words


@dataclass(frozen=True)
class _Sentence:
    source: int  # the source's number as the model saw it
    index: int  # position within that source
    text: str
    terms: frozenset[str]  # stemmed key terms, numbers and lowercased names: what lexical matching reads
    facts: frozenset[str]  # the terms a claim may rest on: a compound's parts too ("Roman-era" holds "Roman")


class _VectorCache:
    """Source-sentence vectors by (embedder weights, text), least recently used out.

    Why: the same chunks come back for related questions (and for every turn of a conversation), and
    their sentences are most of what the check embeds; a few thousand vectors cost a few MB.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: list[str]) -> np.ndarray:
        model = embedder.identity.weights_sha256
        with self.lock:
            missing = list(dict.fromkeys(t for t in texts if (model, t) not in self.vectors))
        fresh: np.ndarray | list[np.ndarray] = embedder.embed(missing) if missing else []
        with self.lock:
            for text, vector in zip(missing, fresh):
                self.vectors[(model, text)] = vector
            found = [self.vectors.get((model, t)) for t in texts]
            for t in texts:
                if (model, t) in self.vectors:
                    self.vectors.move_to_end((model, t))
            while len(self.vectors) > self.size:
                self.vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, embedder.identity.dimension), dtype=np.float32)
        return np.stack([v if v is not None else embedder.embed([t])[0] for v, t in zip(found, texts)])


_SENTENCE_VECTORS = _VectorCache()


# -- text helpers -------------------------------------------------------------------------------------


def strip_citations(text: str) -> str:
    """``"20 days [1]."`` → ``"20 days."``: citations are checked separately, never as words."""
    return _CITATION.sub("", text).strip()


def _lines(text: str) -> list[str]:
    """Logical lines: a hard-wrapped line continues when it lacks an end mark and the next starts lowercase."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = _MARKUP.sub("", raw).strip(" |")
        wrapped = lines and not _MARKUP.match(raw) and line[:1].islower() and lines[-1][-1:] not in ".!?:;"
        if wrapped:
            lines[-1] = f"{lines[-1]} {line}"
        elif line:
            lines.append(line)
    return lines


def split_sentences(text: str, shortest: int = 3) -> list[str]:
    """Sentences of ``text`` of at least ``shortest`` characters: lines first (headings, list items, table rows
    stand alone), then . ! ? ends. Sources drop 1–2 character scraps; an answer keeps them ("20", "UK")."""
    out: list[str] = []
    for line in _lines(text):
        start = 0
        for match in _BOUNDARY.finditer(line):
            before = line[start : match.start()].rstrip(".!?\"'”’)]").rsplit(" ", 1)[-1].lower()
            if before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
                continue
            out.append(line[start : match.start()].strip())
            start = match.end()
        out.append(line[start:].strip())
    return [s for s in out if len(s) >= shortest]


def _stem(word: str) -> str:
    """A light suffix strip so that "days"/"day" and "accrued"/"accrues" meet; not a linguist's stemmer."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


def _number(token: str) -> str:
    return token.replace(",", "").rstrip("%").rstrip(".")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.replace("’", "'"))


def _terms(text: str) -> frozenset[str]:
    """Key terms as matched against sources: numbers normalised, number words as digits, words stemmed."""
    terms = set()
    for token in _tokens(text):
        low = token.lower()
        if token[0].isdigit():
            terms.add(_number(token))
        elif low in _NUMBER_WORDS:
            terms.add(_NUMBER_WORDS[low])
        elif low not in _STOPWORDS and len(low) > 1:
            terms.add(_stem(low.removesuffix("'s")))
    return frozenset(terms)


def _sentences(sources: list[Source]) -> list[_Sentence]:
    out = []
    for source in sources:
        for index, text in enumerate(split_sentences(source.text)):
            terms = _terms(text)
            letters = {t.lower() for t in _tokens(text) if len(t) == 1 and t.isupper()}  # "B cells"
            out.append(_Sentence(source.number, index, text, terms, terms | _terms(text.replace("-", " ")) | letters))
    return out


def _coverage(wanted: frozenset[str] | list[str], have: frozenset[str]) -> float:
    return sum(1 for t in wanted if t in have) / len(wanted) if wanted else 0.0


# -- evidence -----------------------------------------------------------------------------------------


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _rank(
    question: str,
    sentences: list[_Sentence],
    vectors: np.ndarray,
    q_vec: np.ndarray,
    support: tuple[str, np.ndarray] | None = None,
) -> list[Evidence]:
    """Every source sentence scored against the question (and the answer's supported part), best first.

    Score = mean of cosine and key-term coverage, for the question and, when the answer has supported
    sentences (``support`` = their text and summed vector), for those too: the evidence shown is what
    backs *this* answer, not only the topic. An unsupported answer gets question-only evidence.
    """
    if not sentences:
        return []
    q_terms = _terms(question)
    score = 0.5 * (vectors @ q_vec) + 0.5 * np.array([_coverage(q_terms, s.terms) for s in sentences])
    if support is not None:
        a_terms = _terms(support[0])
        a_score = vectors @ _unit(support[1]) + np.array([_coverage(a_terms, s.terms) for s in sentences])
        score = 0.5 * score + 0.25 * a_score
    order = np.argsort(-score, kind="stable")
    return [Evidence(sentences[i].source, sentences[i].text, round(float(score[i]), 4)) for i in order]


# -- grounding ----------------------------------------------------------------------------------------


def _initialisms(short: list[str], long: list[str]) -> dict[str, set[str]]:
    """The capitals-only tokens of ``short`` that words of ``long`` spell out, with those words' keys.

    ``(["US"], ["The", "United", "States"])`` → ``{"us": {"united", "states"}}``: an answer that spells out the
    question's "US" restates it, and an answer's own "(VDE)" after "Victoria Department of Education" is
    shorthand, not a fact that the sources must hold.
    """
    wanted = {t for t in short if 2 <= len(t) <= 6 and t.isalpha() and t.isupper()}
    found: dict[str, set[str]] = {}
    for start, token in enumerate(long):
        if not wanted or not token[0].isupper():
            continue
        letters, keys = "", set[str]()
        for word in long[start : start + 8]:
            if word[0].isupper() and not word.isupper():
                letters, keys = letters + word[0], keys | {_stem(word.lower())}
            elif word.lower() not in _STOPWORDS:
                break
            if letters in wanted:
                found[letters.lower()] = keys
    return found


@dataclass(frozen=True)
class _Facts:
    """What one answer sentence asserts: exact items (numbers, names) and other key terms (stems)."""

    exact: dict[str, str]  # matching key → as written, for the reason shown to the reader
    words: frozenset[str]
    fragment: bool = False  # too few terms to stand alone: read (and embedded) with its question
    echo: bool = False  # a question, or nothing beyond the question's own terms: no answer at all

    @classmethod
    def of(cls, text: str, question: str) -> _Facts:
        exact: dict[str, str] = {}
        words: set[str] = set()
        tokens = _tokens(text)
        own = _initialisms(tokens, tokens)  # "… Department of Education (VDE)": the model's shorthand, no fact
        spelled = _initialisms(_tokens(question), tokens)  # "United States" for the question's "US"
        asked = _terms(question).union(*spelled.values())
        for position, token in enumerate(tokens):
            low = token.lower()
            letter = len(token) == 1 and token.isupper() and token not in "AI"  # "the B cell"
            if token[0].isdigit() or low in _NUMBER_WORDS:
                key = _NUMBER_WORDS.get(low) or _number(token)
            elif (low in _STOPWORDS or len(low) < 2 or low in own) and not letter:
                continue
            else:
                key = _stem(low.removesuffix("'s"))
            # a number or name is a fact to find in one place, unless the question gave it: then it is context
            # ("… in Poland" answering "… in Poland?"), which the source sentence may leave implicit
            name = token[0].isupper() and (position > 0 or token.isupper())  # a sentence's first word is no name
            if (token[0].isdigit() or low in _NUMBER_WORDS or name) and key not in asked:
                exact.setdefault(key, token)
            else:
                words.add(key)
        if not exact and not words:
            return cls(exact, frozenset())
        if text.rstrip().endswith("?") or {*exact, *words} <= asked:
            return cls(exact, frozenset(words), echo=True)
        # A fragment ("20 days", "Denver Broncos") only means something as the answer to its question, so
        # its support must also be about the question: read it with the question's terms.
        if len(exact) + len(words) < SHORT_CLAIM_TERMS:
            return cls(exact, frozenset(words) | asked, fragment=True)
        return cls(exact, frozenset(words))

    @property
    def is_empty(self) -> bool:
        return not self.exact and not self.words


def _check(
    text: str,
    cites: list[int],
    facts: _Facts,
    vector: np.ndarray,
    sentences: list[_Sentence],
    vectors: np.ndarray,
    numbers: list[int],
) -> Claim:
    """One answer sentence against the sentences of the sources it cites (all sources if it cites none).

    Supported when one source sentence holds all its numbers and names and most of its key terms, says the
    same thing (cosine >= ``MIN_SIMILARITY``), and is (within ``MARGIN``) the sentence of those sources
    that is closest to the claim at all. The last condition is what catches a real number or name taken
    from the wrong place: "new hires get 25 days" matches the 20-days sentence best, and 25 is not in it.
    """
    allowed = set(cites) or set(numbers)
    checked = tuple(sorted(allowed))
    if facts.is_empty:
        return Claim(text, False, 0.0, "It states nothing that the sources could confirm.", checked)
    if facts.echo:
        return Claim(text, False, 0.0, "It repeats the question instead of answering it.", checked)
    pool = [i for i, s in enumerate(sentences) if s.source in allowed]
    if not pool:
        return Claim(text, False, 0.0, f"It cites {_labels(checked)}, which has no text to check.", checked)
    sims = vectors[pool] @ vector
    closest = float(sims.max())
    best: tuple[tuple[float, float], int, list[str], float] | None = None
    for j, i in enumerate(pool):
        terms = sentences[i].facts
        missing = [shown for key, shown in facts.exact.items() if key not in terms]
        coverage = _coverage(facts.words, terms) if facts.words else 1.0
        rank = (-float(len(missing)), 0.5 * float(sims[j]) + 0.5 * coverage)
        if best is None or rank > best[0]:
            best = (rank, j, missing, coverage)
    assert best is not None
    (_, score), j, missing, coverage = best
    where = sentences[pool[j]]
    reason = _verdict(facts, missing, coverage, float(sims[j]), closest, sentences, pool, checked)
    evidence = Evidence(where.source, where.text, round(score, 4))
    supported = reason or f"Supported by source [{where.source}]."
    return Claim(text, reason == "", round(score, 4), supported, checked, evidence)


def _verdict(
    facts: _Facts,
    missing: list[str],
    coverage: float,
    sim: float,
    closest: float,
    sentences: list[_Sentence],
    pool: list[int],
    checked: tuple[int, ...],
) -> str:
    """Why a claim is not supported ("" when it is): one plain sentence a reader can act on."""
    if missing:
        anywhere = frozenset().union(*(sentences[i].facts for i in pool))
        absent = [m for m in missing if _number(m.lower()) not in anywhere and _stem(m.lower()) not in anywhere]
        if absent:
            verb = "does" if len(checked) == 1 else "do"
            return f"{_capital(_labels(checked))} {verb} not mention {_quoted(absent, 'or')}."
        return _misplaced(missing, checked)
    if coverage < MIN_TERM_COVERAGE and facts.exact:
        # its numbers and names are there, but the sentence that holds them is about something else
        return _misplaced(list(facts.exact.values()), checked)
    if coverage < MIN_TERM_COVERAGE:
        return f"Most of its words are not found together in {_labels(checked)}."
    if sim < MIN_SIMILARITY:
        return f"No sentence of {_labels(checked)} says this."
    if sim < closest - MARGIN:
        return f"Its facts are in {_labels(checked)}, but not in what it says about this."
    return ""


def _misplaced(items: list[str], checked: tuple[int, ...]) -> str:
    verb, says = ("mentions", "it says") if len(checked) == 1 else ("mention", "they say")
    return f"{_capital(_labels(checked))} {verb} {_quoted(items, 'and')}, but not in what {says} about this."


def _quoted(items: list[str], last: str) -> str:
    """``["Maria", "Lopez"]`` → ``“Maria” or “Lopez”``: the items a reason names, as a reader would list them."""
    shown = [f"“{item}”" for item in dict.fromkeys(items)]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} {last} {shown[-1]}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _labels(numbers: tuple[int, ...]) -> str:
    return ("source " if len(numbers) == 1 else "sources ") + ", ".join(f"[{n}]" for n in numbers)


def _answer_sentences(text: str, count: int) -> list[tuple[str, list[int]]]:
    """(sentence without citations, the valid source numbers it cites) for each sentence of the answer."""
    out = []
    for sentence in split_sentences(text, shortest=1):
        cites = [int(n) for group in _CITATION.findall(sentence) for n in group.split(",")]
        clean = strip_citations(sentence)
        if clean.strip(" .!?"):
            out.append((clean, [n for n in dict.fromkeys(cites) if 1 <= n <= count]))
    return out


def ground(
    question: str,
    text: str,
    sources: list[Source],
    embedder: Embedder,
    check: bool = True,
    confidence: float | None = None,
) -> Grounding:
    """Evidence for an answer and (``check``) a verdict per sentence, from one batched embedder call.

    ``text`` empty means no answer was generated: the evidence is then chosen for the question alone, as
    for an extractive answer. ``confidence``: the model's geometric-mean token probability for ``text``
    (``None``: its runtime could not tell, and the check goes without it).
    """
    started = time.perf_counter()
    sentences = _sentences(sources)
    parts = _answer_sentences(text, len(sources)) if check and text.strip() else []
    facts = [_Facts.of(sentence, question) for sentence, _ in parts]
    # A fragment is embedded with its question ("… new hires get? 20 days"), a full sentence on its own.
    probes = [f"{question} {s}" if f.fragment else s for (s, _), f in zip(parts, facts)]
    vectors = embedder.embed([question, *probes])
    q_vec, c_vecs, s_vecs = vectors[0], vectors[1:], _SENTENCE_VECTORS.embed(embedder, [s.text for s in sentences])
    numbers = [s.number for s in sources]
    claims = [
        _check(sentence, cites, f, c_vecs[i], sentences, s_vecs, numbers)
        for i, ((sentence, cites), f) in enumerate(zip(parts, facts))
    ]
    asked = _rank(question, sentences, s_vecs, q_vec)[:ON_TOPIC]
    claims = _on_topic(claims, [e for e in asked if e.score >= asked[0].score - ON_TOPIC_MARGIN] if asked else [])
    claims = _of_the_kind_asked(claims, question)
    sure = claims
    claims = _confident(claims, confidence)
    good = [i for i, c in enumerate(claims) if c.supported]
    support = (" ".join(claims[i].text for i in good), c_vecs[good].sum(axis=0)) if good else None
    evidence = _rank(question, sentences, s_vecs, q_vec, support)[:EVIDENCE_COUNT]
    ms = (time.perf_counter() - started) * 1000
    status = _status(claims, bool(sources), check)
    unsure = status == "unsupported" and _status(sure, bool(sources), check) != "unsupported"
    return Grounding(claims, evidence, status, round(ms, 1), unsure)


def _on_topic(claims: list[Claim], asked: list[Evidence]) -> list[Claim]:
    """Supported claims that all rest on sentences far from the question do not answer it: mark them.

    A faithful sentence can still miss the question (a small model's usual mistake: it copies the wrong
    sentence of the right source). At least one supported claim must rest on one of the ``ON_TOPIC``
    sentences that best answer the question alone (within ``ON_TOPIC_MARGIN`` of the best); if none does,
    each supported claim is marked.
    """
    near = {(e.source, e.text) for e in asked}
    supported = [c for c in claims if c.supported and c.evidence is not None]
    if not supported or any((c.evidence.source, c.evidence.text) in near for c in supported if c.evidence):
        return claims
    return [
        replace(
            c, supported=False, reason=f"Source [{c.evidence.source}] says this, but it does not answer the question."
        )
        if c in supported and c.evidence is not None
        else c
        for c in claims
    ]


def _asked_kind(question: str) -> str:
    """``number``, ``name``, ``time`` or "" — what the question's own wording demands of an answer."""
    if _ASKS_NUMBER.search(question):
        return "number"
    if _ASKS_TIME.search(question):
        return "time"
    return "name" if _ASKS_NAME.search(question) else ""


def _gives(kind: str, text: str, question: str) -> bool:
    """Whether ``text`` holds something of ``kind`` that the question does not already hold.

    A time is a number (a year, a date), a named period ("the Renaissance", "May") or a time word
    ("centuries", "ago").
    """
    asked = _terms(question)
    for token in _tokens(text):
        low = token.lower()
        number = token[0].isdigit() or low in _NUMBER_WORDS
        name = token[0].isupper() and low not in _STOPWORDS
        new_number = number and (_NUMBER_WORDS.get(low) or _number(token)) not in asked
        new_name = name and _stem(low.removesuffix("'s")) not in asked
        if new_number if kind == "number" else new_name if kind == "name" else new_number or new_name:
            return True
        if kind == "time" and low in _TIME_WORDS:
            return True
    return False


def _of_the_kind_asked(claims: list[Claim], question: str) -> list[Claim]:
    """Supported claims of an answer that gives no number to "how many", no name to "who": marked.

    Why: the commonest wrong answer of a small model is a faithful phrase of the right sentence that is not
    the thing asked for; the question's wording catches the plainest of them at no cost.
    """
    kind = _asked_kind(question)
    if not kind or any(_gives(kind, c.text, question) for c in claims):
        return claims
    reason = f"The question asks for {_KIND_WORDS[kind]}, and this answer gives none."
    return [replace(c, supported=False, reason=reason) if c.supported else c for c in claims]


def _confident(claims: list[Claim], confidence: float | None) -> list[Claim]:
    """Supported claims of an answer that its model gave unsure (under ``MIN_CONFIDENCE``): marked.

    Why: faithful words are not a right answer. A small model that picks the wrong phrase of the right
    sentence passes every check against the sources, but mostly does so unsure — its own probabilities
    say what the sources cannot.
    """
    if confidence is None or confidence >= MIN_CONFIDENCE:
        return claims
    reason = f"The model was unsure of this answer (confidence {confidence:.0%})."
    return [replace(c, supported=False, reason=reason) if c.supported else c for c in claims]


def _status(claims: list[Claim], has_sources: bool, check: bool) -> str:
    if not check or not has_sources:
        return "unchecked"
    supported = sum(c.supported for c in claims)
    if claims and supported == len(claims):
        return "supported"
    return "partial" if supported else "unsupported"


def find_evidence(question: str, sources: list[Source], embedder: Embedder) -> list[Evidence]:
    """The source sentences that best answer ``question`` (no answer needed), best first."""
    return ground(question, "", sources, embedder, check=False).evidence


def extractive_answer(evidence: list[Evidence], count: int = 1) -> str:
    """An answer made of the best evidence sentences alone, cited: what Outpost says with no LLM."""
    if not evidence:
        return "The sources contain nothing on this."
    return " ".join(f"{e.text.rstrip()} [{e.source}]" for e in evidence[:count])
