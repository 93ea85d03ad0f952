"""Question/answer pairs to fine-tune on, and a split that holds some out for judging.

A JSONL file has one ``{"question": ..., "answer": ...}`` per line; ``"heldout": true`` pins a pair
to the held-out side (useful when the held-out questions must be paraphrases the model never saw).
Otherwise the split is by a hash of the question, so it is the same on every run and machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigError

__all__ = ["QAPair", "load_pairs", "split_pairs"]


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    heldout: bool | None = None  # None: decided by the hash split
    origin: str = "file"  # file | feedback | generated

    def messages(self) -> list[dict[str, str]]:
        """The conversation the model is asked (no system prompt: the model's own default applies)."""
        return [{"role": "user", "content": self.question}]


def load_pairs(path: Path) -> list[QAPair]:
    """Pairs from a JSONL file; a bad line is one error naming its line number."""
    try:
        lines = path.expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"Cannot read pairs from {path}: {exc}") from exc
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, answer = str(row["question"]).strip(), str(row["answer"]).strip()
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f'{path} line {number}: expected {{"question": ..., "answer": ...}} ({type(exc).__name__})'
            ) from None
        if not question or not answer:
            raise ConfigError(f"{path} line {number}: question and answer must not be empty")
        heldout = row.get("heldout")
        pairs.append(QAPair(question, answer, None if heldout is None else bool(heldout)))
    return pairs


def _hashed_heldout(pair: QAPair, fraction: float) -> bool:
    digest = hashlib.sha256(pair.question.strip().lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_pairs(pairs: list[QAPair], heldout_fraction: float = 0.2) -> tuple[list[QAPair], list[QAPair]]:
    """(train, held out): pinned pairs go where they say, the rest by question hash."""
    train: list[QAPair] = []
    held: list[QAPair] = []
    for pair in pairs:
        out = pair.heldout if pair.heldout is not None else _hashed_heldout(pair, heldout_fraction)
        (held if out else train).append(pair)
    if not train or not held:
        raise ConfigError(
            f"Fine-tuning needs pairs to train on and pairs held out to judge by; got {len(train)} and "
            f"{len(held)} of {len(pairs)}: add more pairs"
        )
    return train, held
