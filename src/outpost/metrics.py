"""Ranking metrics, in one place: the BEIR evaluation and the adapter's held-out gate score the same way.

Definitions follow BEIR / pytrec_eval: nDCG@k with graded gains and a log2 discount; recall@k over the
relevant items; MRR@k as the reciprocal rank of the first relevant item within the top k (0 if none).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

__all__ = ["ndcg_at_k", "recall_at_k", "reciprocal_rank"]


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """``1 / rank`` of the first item of ``ranked[:k]`` that is in ``relevant``; 0.0 when none is.

    >>> reciprocal_rank(["a", "b", "c"], {"b"})
    0.5
    """
    first = next((rank for rank, item in enumerate(ranked[:k], start=1) if item in relevant), None)
    return 1.0 / first if first else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """The share of ``relevant`` found in ``ranked[:k]`` (0.0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(relevant) & set(ranked[:k])) / len(relevant)


def ndcg_at_k(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains (``judged``: item → grade; unjudged items count 0)."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
