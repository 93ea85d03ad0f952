"""The fixed probe set that decides whether another backend's vectors may stand in for the reference path's.

A backend keeps the model's :class:`EmbeddingIdentity` only if, on these texts, every vector is within cosine
``FP32_MIN_COSINE`` of sentence-transformers' (DESIGN.md §11). The texts cover what a collection holds: short
queries, sentences, punctuation and numbers, non-ASCII, an empty string, and texts past the 256-word-piece limit
(so truncation must agree too). Changing them changes nothing stored: the check runs at export time only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FP32_MIN_COSINE", "INT8_MIN_COSINE", "PROBE_TEXTS", "cosines"]

FP32_MIN_COSINE = 0.999
"""Same identity: what DESIGN.md §11 asks of an export of the same weights."""

INT8_MIN_COSINE = 0.95
"""A dynamically quantised graph is a *different* identity, never chosen automatically; below this worst-case
probe cosine it is not offered at all. Measured: MatMul-only per-channel int8 gives 0.974 on the probes (its worst
is a short non-English text) and ≥ 0.99 on NFCorpus abstracts, while quantising every op (the Gathers too) gives
0.90 on NFCorpus: 0.95 separates a sound quantisation from a broken one (docs/benchmarks.md, "Embedding")."""

_LONG = (
    "Dietary fibre intake and the risk of cardiovascular disease were examined in a prospective cohort of "
    "adults followed for a median of twelve years, with repeated food-frequency questionnaires, blood lipids, "
    "blood pressure and body-mass index measured at each visit. "
)

PROBE_TEXTS: tuple[str, ...] = (
    "",
    "vitamin d",
    "How many vacation days do new hires get?",
    "What does the handbook say about expense reports?",
    "Is coffee bad for your heart?",
    'C++ AND "quoted" terms? (parentheses) [brackets] 100% / 3.5 mg·kg⁻¹',
    "Statins reduce LDL cholesterol by 30–50% in most patients.",
    "Les légumes crucifères et le risque de cancer: une méta-analyse.",
    "Ernährung, Darmflora und Immunsystem — eine Übersicht.",
    "緑茶のカテキンと心血管疾患のリスク",
    "The quick brown fox jumps over the lazy dog.",
    "New hires receive 20 days of paid vacation in their first year, rising to 25 after five years of service.",
    "Breast cancer cells tend to accumulate more cadmium than normal tissue; dietary sources include shellfish, "
    "offal and some grains, and smokers carry roughly twice the body burden of non-smokers.",
    "# Methods\n\nWe searched MEDLINE and EMBASE up to March 2014 for randomised trials of omega-3 supplements.",
    "ID: MED-10 | PMID 25329299 | doi:10.1016/j.numecd.2014.07.006",
    _LONG,
    _LONG * 3,  # ~ 150 words: near the chunker's 200-word-piece chunks
    _LONG * 8,  # past 256 word pieces: the model truncates; every backend must truncate the same way
)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``(n, d)`` arrays (rows need not be normalised)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0))
