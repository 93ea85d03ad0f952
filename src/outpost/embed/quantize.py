"""The one int8 vector format used everywhere: store, ANN index, packs and queries.

Per-vector symmetric quantisation: ``q = round(x · 127 / max|x|)``, ``scale = max|x| / 127``.
Cosine on ``q`` equals cosine on ``x`` up to rounding, so search works on ``q`` directly and
``scale`` is only needed to reconstruct floats. Queries are quantised the same way: handing usearch
floats for an ``i8`` index lets it cast them itself with far coarser levels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dequantize", "quantize"]


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(n, d)`` → (int8 ``(n, d)``, float32 scales ``(n,)``); zero rows stay zero."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    peak = np.abs(x).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize` (up to rounding)."""
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32)[:, None]
