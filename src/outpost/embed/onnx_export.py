"""Export a mean-pooling sentence-transformers model to ONNX once, check it, and keep it content-addressed.

Why here and how:
- The laptop that only answers must not import torch (≈1 s and ~400 MB before the first query). So the graph is
  exported once — at first use, with torch, which the package depends on anyway — and every later process loads
  only ``onnxruntime`` and ``tokenizers`` (``outpost.embed.onnx``).
- The graph computes the encoder *and* the mean pooling (masked sum / count), so one ``session.run`` yields
  sentence vectors; normalising stays in :meth:`Embedder.embed` like every backend.
- Before a graph is used it is checked against the reference path (sentence-transformers) on the fixed probe set
  (``outpost.embed.probe``): fp32 must reach cosine ≥ 0.999 on every probe to keep the model's identity; the
  int8 dynamically quantised graph is a different identity and needs ≥ ``INT8_MIN_COSINE``. The verdict and the
  cosines are written in the manifest, so a failed graph is not re-exported at every start.
- ``fp32-opt`` is the plain fp32 graph rewritten once by ONNX Runtime's transformer optimiser (fused Attention,
  EmbedLayerNormalization, SkipLayerNormalization, BiasGelu: kernels that the session-level optimiser does not
  produce from a traced graph) and checked like any graph: at cosine ≥ 0.999 it keeps the model's identity. It is
  derived from the cached plain graph, so a cache made before it existed gains one file and exports nothing again.
- Layout under the cache folder (default ``$OUTPOST_HOME/models/onnx``)::

      blobs/sha256-<hex>.onnx                 graphs, named by their content
      exports/<weights-sha256>-<variant>-v<N>.json   which graph a model's weights export to, and its verdict

  Both are written through a temp file and renamed (``outpost.fsutil``): two processes exporting at once both
  finish with the same files, and a killed export leaves nothing a reader would take.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from outpost.embed.local_model import LocalModel, read_json
from outpost.embed.pooled import load_pooled_encoder
from outpost.embed.probe import FP32_MIN_COSINE, INT8_MIN_COSINE, PROBE_TEXTS, cosines
from outpost.fsutil import atomic_write_text, commit_file
from outpost.hashing import sha256_file
from outpost.home import ensure_private_dir

__all__ = ["EXPORT_VERSION", "OnnxExport", "Variant", "ensure_export", "find_export", "optimize_graph"]

log = logging.getLogger(__name__)

Variant = Literal["fp32", "fp32-opt", "int8"]
EXPORT_VERSION = 1
"""Bump when the exported graph changes (inputs, pooling, opset): old manifests are then ignored."""
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class OnnxExport:
    """What the manifest records about one exported graph."""

    variant: Variant
    source_weights_sha256: str
    graph_sha256: str
    graph_bytes: int
    min_cosine: float
    mean_cosine: float
    threshold: float
    accepted: bool
    exporter: str

    def graph_path(self, cache: Path) -> Path:
        return cache / "blobs" / f"sha256-{self.graph_sha256}.onnx"


def _manifest_path(cache: Path, weights_sha256: str, variant: Variant) -> Path:
    return cache / "exports" / f"{weights_sha256}-{variant}-v{EXPORT_VERSION}.json"


def find_export(cache: Path, weights_sha256: str, variant: Variant) -> OnnxExport | None:
    """The recorded export for these weights, if its manifest and graph are both there (graph size checked)."""
    try:
        export = OnnxExport(**json.loads(_manifest_path(cache, weights_sha256, variant).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    graph = export.graph_path(cache)
    if export.accepted and not (graph.is_file() and graph.stat().st_size == export.graph_bytes):
        return None
    return export


def ensure_export(model: LocalModel, weights_sha256: str, cache: Path, variant: Variant) -> OnnxExport:
    """The checked export for ``model`` (exporting it now if no manifest says how it went).

    ``fp32-opt`` first needs the plain ``fp32`` graph: when that one was refused, its record is returned (not
    accepted), since an optimised copy of a wrong graph cannot be right. A missing optimiser raises
    :class:`ImportError` and records nothing (the install may be repaired).
    """
    found = find_export(cache, weights_sha256, variant)
    if found is not None:
        return found
    source = ensure_export(model, weights_sha256, cache, "fp32") if variant == "fp32-opt" else None
    if source is not None and not source.accepted:
        return source
    ensure_private_dir(cache / "blobs")
    ensure_private_dir(cache / "exports")
    with _exclusive(cache / ".export.lock"):  # several processes starting at once: one exports, the rest wait
        found = find_export(cache, weights_sha256, variant)
        if found is not None:
            return found
        log.warning("exporting %s to ONNX (%s) once; later runs load it from %s", model.name, variant, cache)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".export-") as tmp:
            if source is not None:
                graph, fused = optimize_graph(model, source.graph_path(cache), Path(tmp) / "model-opt.onnx")
                return _check_and_store(model, weights_sha256, cache, variant, graph, f"; optimiser: {fused}")
            graph = _export_fp32(model, Path(tmp) / "model.onnx")
            if variant == "int8":
                graph = _quantize(graph, Path(tmp) / "model-int8.onnx")
            return _check_and_store(model, weights_sha256, cache, variant, graph)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """An advisory ``flock`` held for the block (released by the kernel if the process dies)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _export_fp32(model: LocalModel, out: Path) -> Path:
    """Trace the Hugging Face encoder plus mean pooling into ``out`` (dynamic batch and sequence axes)."""
    import torch

    wrapped = load_pooled_encoder(model, attention="eager")  # plain ops: ONNX Runtime fuses them itself
    dummy = torch.ones((2, 8), dtype=torch.long)
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["sentence_embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer notes about constant shapes: the probe check below is the judge
        torch.onnx.export(
            wrapped,
            (dummy, dummy, torch.zeros_like(dummy)),
            str(out),
            input_names=list(INPUTS),
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return out


def optimize_graph(model: LocalModel, plain: Path, out: Path) -> tuple[Path, str]:
    """``plain`` rewritten by ONNX Runtime's BERT optimiser into ``out``; also says which fused ops it made.

    Python fusions only (``opt_level=0``): the saved graph holds no kernels chosen for this machine's CPU, so it
    is portable like the plain one, and each session still applies ``ORT_ENABLE_ALL`` on top when it loads. The
    optimiser ships inside the onnxruntime wheel and imports neither torch nor the network.
    """
    from onnxruntime.transformers.optimizer import optimize_model  # type: ignore[import-untyped]

    _quiet_optimizer_logs()
    config = read_json(model.folder / "config.json")
    optimized = optimize_model(
        str(plain),
        model_type="bert",  # BERT-family encoders (MiniLM, mpnet- and RoBERTa-style); the probe check judges
        num_heads=int(config.get("num_attention_heads", 0)),  # 0: detected from the graph
        hidden_size=int(config.get("hidden_size", 0)),
        opt_level=0,
        use_gpu=False,
    )
    optimized.save_model_to_file(str(out))
    fused = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    return out, ", ".join(f"{name} {count}" for name, count in sorted(fused.items())) or "nothing fused"


def _quiet_optimizer_logs() -> None:
    """The optimiser's modules log each fusion at INFO under their bare file names (``onnx_model``,
    ``fusion_base``…): noise in a user's log; :func:`optimize_graph` returns the summary instead."""
    import onnxruntime.transformers  # type: ignore[import-untyped]

    for module in Path(onnxruntime.transformers.__file__).parent.glob("*.py"):
        logging.getLogger(module.stem).setLevel(logging.WARNING)


def _quantize(fp32: Path, out: Path) -> Path:
    """Dynamic int8 weights for the MatMuls only, per channel (measured: quantising the embedding Gathers too
    costs far more accuracy for little speed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    quantize_dynamic(
        str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True
    )
    return out


def _check_and_store(
    model: LocalModel, weights: str, cache: Path, variant: Variant, graph: Path, note: str = ""
) -> OnnxExport:
    from outpost.embed.onnx import run_graph

    reference = _reference_vectors(model)
    texts = list(PROBE_TEXTS)
    found = np.concatenate([cosines(run_graph(graph, model, texts, batched), reference) for batched in (True, False)])
    threshold = INT8_MIN_COSINE if variant == "int8" else FP32_MIN_COSINE
    digest = sha256_file(graph)
    export = OnnxExport(
        variant=variant,
        source_weights_sha256=weights,
        graph_sha256=digest,
        graph_bytes=graph.stat().st_size,
        min_cosine=round(float(found.min()), 6),
        mean_cosine=round(float(found.mean()), 6),
        threshold=threshold,
        accepted=bool(found.min() >= threshold),
        exporter=_exporter_versions() + note,
    )
    if export.accepted:
        commit_file(graph, export.graph_path(cache))
    atomic_write_text(_manifest_path(cache, weights, variant), json.dumps(asdict(export), indent=1))
    log.log(
        logging.INFO if export.accepted else logging.WARNING,  # only a refusal changes what the user gets
        "ONNX %s export of %s: probe cosine min %.6f (needs %.3f): %s",
        variant,
        model.name,
        export.min_cosine,
        threshold,
        "accepted" if export.accepted else "refused",
    )
    return export


@functools.lru_cache(maxsize=4)
def _reference_vectors(model: LocalModel) -> np.ndarray:
    """The reference path: sentence-transformers itself on the probe texts, on the CPU, in fp32 (computed once per
    process: a first start checks the plain graph and then its optimised copy against the same vectors)."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model.folder), device="cpu", local_files_only=True)
    vectors = st.encode(list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors)


def _exporter_versions() -> str:
    import onnxruntime
    import torch

    return f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, opset {OPSET}"
