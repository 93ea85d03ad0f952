"""The ONNX Runtime backend: exported once into a content-addressed cache, checked against sentence-transformers
on the probe set, chosen automatically on the CPU, and torch-free afterwards (a laptop that only answers).

The export runs once per session into the session's shared cache (``onnx_cache`` in conftest), which the rest of
the suite uses too; a second, int8 export and a deliberately damaged graph use their own folders.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_embed import nfcorpus_texts

from outpost.embed import select
from outpost.embed.local_model import LocalModel
from outpost.embed.onnx import OnnxEmbedder, run_graph
from outpost.embed.onnx_export import OnnxExport, _check_and_store, ensure_export, find_export
from outpost.embed.probe import FP32_MIN_COSINE, INT8_MIN_COSINE, PROBE_TEXTS, cosines
from outpost.embed.select import CpuEmbedder, choose_embedder
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.hashing import sha256_file

pytestmark = pytest.mark.slow  # exports the model with torch (about 15 s on an idle core, minutes under load)


@pytest.fixture(scope="module")
def minilm() -> LocalModel:
    model = LocalModel.find("all-MiniLM-L6-v2")
    assert model is not None and model.plain_mean_pooling()
    return model


@pytest.fixture(scope="module")
def onnx_embedder(onnx_cache: Path) -> OnnxEmbedder:
    chosen = choose_embedder("all-MiniLM-L6-v2", "auto", "cpu", 64, onnx_cache)
    assert isinstance(chosen, CpuEmbedder)
    assert isinstance(chosen.backend, OnnxEmbedder), "on a CPU, auto runs ONNX Runtime once its graph passed the check"
    return chosen.backend


def test_fp32_graph_keeps_the_identity_and_matches_the_reference(
    onnx_embedder: OnnxEmbedder, embedder: SentenceTransformerEmbedder
) -> None:
    assert onnx_embedder.identity == embedder.identity  # a hub's torch collection is searchable here, and back
    texts = nfcorpus_texts(48) + ["vitamin d", "Is coffee bad for your heart?"]
    assert cosines(onnx_embedder.embed(texts), embedder.embed(texts)).min() >= FP32_MIN_COSINE
    assert onnx_embedder.count_tokens(texts) == embedder.count_tokens(texts)


def test_the_cache_is_content_addressed_and_records_the_check(onnx_embedder: OnnxEmbedder, onnx_cache: Path) -> None:
    graph = onnx_embedder.graph
    assert graph.parent == onnx_cache / "blobs" and graph.name == f"sha256-{sha256_file(graph)}.onnx"
    (manifest,) = (onnx_cache / "exports").glob("*-fp32-v*.json")
    record = json.loads(manifest.read_text())
    assert record["accepted"] and record["min_cosine"] >= FP32_MIN_COSINE and record["threshold"] == FP32_MIN_COSINE
    assert not [p for p in onnx_cache.iterdir() if p.name.startswith(".export-")]  # no temp folder left behind


def test_a_truncated_graph_is_not_taken(onnx_embedder: OnnxEmbedder, onnx_cache: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cache"
    shutil.copytree(onnx_cache, copy)
    weights = onnx_embedder.identity.weights_sha256
    assert find_export(copy, weights, "fp32") is not None
    blob = copy / "blobs" / onnx_embedder.graph.name
    blob.write_bytes(blob.read_bytes()[:1000])
    assert find_export(copy, weights, "fp32") is None  # and so ensure_export would export it again


def test_a_graph_that_fails_the_probe_check_falls_back_to_torch(
    onnx_embedder: OnnxEmbedder, minilm: LocalModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real damage, really measured: the exported graph with one weight matrix scaled is refused, recorded as
    refused (not re-exported at each start), and auto then uses sentence-transformers with a warning."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_embedder.graph))
    biggest = max(graph.graph.initializer, key=lambda t: int(np.prod(t.dims)) if len(t.dims) == 2 else 0)
    damaged = numpy_helper.to_array(biggest) * 0.2
    biggest.CopyFrom(numpy_helper.from_array(damaged.astype(np.float32), biggest.name))
    path = tmp_path / "damaged.onnx"
    onnx.save(graph, str(path))
    cache = tmp_path / "cache"
    (cache / "exports").mkdir(parents=True)
    (cache / "blobs").mkdir()
    weights = onnx_embedder.identity.weights_sha256
    record = _check_and_store(minilm, weights, cache, "fp32", path)
    assert not record.accepted and record.min_cosine < FP32_MIN_COSINE
    assert not list((cache / "blobs").iterdir())  # a refused graph is never stored
    assert ensure_export(minilm, weights, cache, "fp32") == record  # the verdict is remembered
    with caplog.at_level(logging.WARNING, logger="outpost.embed.select"):
        chosen = choose_embedder("all-MiniLM-L6-v2", "auto", "cpu", 64, cache)
        assert isinstance(chosen, CpuEmbedder) and isinstance(chosen.backend, SentenceTransformerEmbedder)
    assert "differs from sentence-transformers (probe cosine" in caplog.text


def test_int8_graph_is_its_own_identity(
    onnx_embedder: OnnxEmbedder, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(onnx_embedder.graph.parent.parent, cache)  # reuse the weights memo, export int8 only
    int8 = choose_embedder("all-MiniLM-L6-v2", "onnx-int8", "cpu", 64, cache)
    assert isinstance(int8, OnnxEmbedder)
    assert int8.identity != embedder.identity and int8.identity.name.endswith("+onnx-int8")
    assert int8.identity.weights_sha256 == sha256_file(int8.graph)
    texts = nfcorpus_texts(32)
    assert cosines(int8.embed(texts), embedder.embed(texts)).min() >= INT8_MIN_COSINE
    assert int8.graph.stat().st_size < onnx_embedder.graph.stat().st_size * 0.7  # the embedding table stays fp32


def test_ingest_and_search_on_a_laptop_never_import_torch(
    onnx_embedder: OnnxEmbedder, onnx_cache: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """A fresh process with the graph cached: a whole ingest and a search, and torch is never imported."""
    script = (
        "import sys\n"
        "from outpost import Outpost\n"
        "op = Outpost()\n"
        f"report = op.ingest({str(sample_dir)!r}, collection='notes')\n"
        "hits = op.search('How many vacation days do new hires get?', collection='notes')\n"
        "assert hits, 'no hits'\n"
        "print(type(op.embedder().backend).__name__, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "OUTPOST_HOME": str(tmp_path / "laptop"), "OUTPOST_EMBED_CACHE": str(onnx_cache)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["OnnxEmbedder", "False"]


@pytest.fixture(scope="module")
def optimised(minilm: LocalModel, onnx_embedder: OnnxEmbedder, onnx_cache: Path) -> OnnxExport:
    """The optimiser's fused fp32 graph, derived once from the plain graph already in the session's cache."""
    export = ensure_export(minilm, onnx_embedder.identity.weights_sha256, onnx_cache, "fp32-opt")
    assert export.accepted, export
    return export


def test_the_optimised_graph_is_fused_and_matches_the_reference_on_the_probe_set(
    optimised: OnnxExport, minilm: LocalModel, onnx_cache: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """DESIGN.md §11: an export of the same weights keeps the identity only at cosine ≥ 0.999 on the probe set —
    measured here again, independently of the export's own check, padded in one batch and one text at a time."""
    import onnx

    graph = optimised.graph_path(onnx_cache)
    ops = {node.op_type for node in onnx.load(str(graph)).graph.node}
    assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu"} <= ops
    assert "Softmax" not in ops  # the attention is one kernel, not MatMul → Softmax → MatMul
    assert graph.name == f"sha256-{sha256_file(graph)}.onnx" and optimised.min_cosine >= FP32_MIN_COSINE
    assert "optimiser: Attention 6" in optimised.exporter  # MiniLM-L6: six layers, each fused
    reference = embedder.embed(list(PROBE_TEXTS))
    for batched in (True, False):
        assert cosines(run_graph(graph, minilm, list(PROBE_TEXTS), batched), reference).min() >= FP32_MIN_COSINE
    fused = OnnxEmbedder(minilm, graph, embedder.identity)
    texts = nfcorpus_texts(24)
    assert cosines(fused.embed(texts), embedder.embed(texts)).min() >= FP32_MIN_COSINE


def test_the_optimised_graph_is_another_cached_file_made_once(
    optimised: OnnxExport, onnx_embedder: OnnxEmbedder, minilm: LocalModel, onnx_cache: Path
) -> None:
    weights = onnx_embedder.identity.weights_sha256
    plain = find_export(onnx_cache, weights, "fp32")
    assert plain is not None and plain.graph_sha256 != optimised.graph_sha256  # both blobs stay, side by side
    assert (onnx_cache / "exports" / f"{weights}-fp32-opt-v1.json").is_file()
    before = optimised.graph_path(onnx_cache).stat().st_mtime_ns
    assert ensure_export(minilm, weights, onnx_cache, "fp32-opt") == optimised  # read back, not made again
    assert optimised.graph_path(onnx_cache).stat().st_mtime_ns == before
    assert not [p for p in onnx_cache.iterdir() if p.name.startswith(".export-")]


def _plain_only_cache(onnx_embedder: OnnxEmbedder, onnx_cache: Path, target: Path) -> Path:
    """A copy of the session cache holding the plain fp32 export only (as a cache made before the optimiser)."""
    weights = onnx_embedder.identity.weights_sha256
    plain = find_export(onnx_cache, weights, "fp32")
    assert plain is not None
    (target / "exports").mkdir(parents=True)
    (target / "blobs").mkdir()
    shutil.copy(onnx_cache / "weights-sha256.json", target / "weights-sha256.json")
    shutil.copy(onnx_cache / "exports" / f"{weights}-fp32-v1.json", target / "exports")
    shutil.copy(plain.graph_path(onnx_cache), plain.graph_path(target))
    return target


def test_thread_settings_reach_the_session(onnx_embedder: OnnxEmbedder, minilm: LocalModel) -> None:
    import onnxruntime as ort

    from outpost.cpus import physical_cores

    assert onnx_embedder.threads == physical_cores()  # the default: real cores, not the host's logical CPUs
    one = OnnxEmbedder(minilm, onnx_embedder.graph, onnx_embedder.identity, threads=1)
    options = one.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    texts = nfcorpus_texts(4)
    assert cosines(one.embed(texts), onnx_embedder.embed(texts)).min() >= 0.99999  # threads change no vector


def test_without_the_optimiser_no_fused_graph_is_recorded_and_auto_steps_down_to_the_plain_graph(
    onnx_embedder: OnnxEmbedder,
    minilm: LocalModel,
    onnx_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An install whose onnxruntime lacks ``onnxruntime.transformers`` (a ``None`` entry in ``sys.modules`` makes
    the real import fail): the fused export raises and records nothing (a repaired install tries again), and
    ``auto`` told to try the fused graph first runs the plain one, saying so."""
    cache = _plain_only_cache(onnx_embedder, onnx_cache, tmp_path / "cache")
    weights = onnx_embedder.identity.weights_sha256
    monkeypatch.setitem(sys.modules, "onnxruntime.transformers.optimizer", None)
    with pytest.raises(ImportError):
        ensure_export(minilm, weights, cache, "fp32-opt")
    assert find_export(cache, weights, "fp32-opt") is None
    assert not [p for p in cache.iterdir() if p.name.startswith(".export-")]
    monkeypatch.setattr(select, "CPU_GRAPHS", ("fp32-opt", "fp32"))
    with caplog.at_level(logging.WARNING, logger="outpost.embed.select"):
        chosen = choose_embedder("all-MiniLM-L6-v2", "auto", "cpu", 64, cache)
        assert isinstance(chosen, CpuEmbedder) and isinstance(chosen.backend, OnnxEmbedder)
    assert chosen.backend.graph.name == onnx_embedder.graph.name and chosen.identity == onnx_embedder.identity
    assert "ONNX fp32-opt embedding unavailable (ModuleNotFoundError: import of onnxruntime.transformers" in caplog.text
    assert "using the ONNX fp32 graph" in caplog.text


def test_a_fused_graph_that_fails_the_probe_check_is_refused_and_auto_steps_down(
    optimised: OnnxExport,
    onnx_embedder: OnnxEmbedder,
    minilm: LocalModel,
    onnx_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real damage, really measured: the fused graph with its feed-forward weights scaled is refused and never
    stored; ``auto`` (fused graph first) then runs the plain graph, which passed, under the same identity."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(optimised.graph_path(onnx_cache)))
    hidden = int(onnx_embedder.identity.dimension)
    scaled = [t for t in graph.graph.initializer if list(t.dims) == [hidden, 4 * hidden]]
    assert len(scaled) == 6  # one feed-forward up-projection per layer
    for tensor in scaled:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(0.2), tensor.name))
    damaged = tmp_path / "damaged.onnx"
    onnx.save(graph, str(damaged))
    cache = _plain_only_cache(onnx_embedder, onnx_cache, tmp_path / "cache")
    weights = onnx_embedder.identity.weights_sha256
    record = _check_and_store(minilm, weights, cache, "fp32-opt", damaged)
    assert not record.accepted and record.min_cosine < FP32_MIN_COSINE
    assert [p.name for p in (cache / "blobs").iterdir()] == [onnx_embedder.graph.name]  # only the plain graph
    assert ensure_export(minilm, weights, cache, "fp32-opt") == record  # the verdict is remembered
    monkeypatch.setattr(select, "CPU_GRAPHS", ("fp32-opt", "fp32"))
    with caplog.at_level(logging.WARNING, logger="outpost.embed.select"):
        chosen = choose_embedder("all-MiniLM-L6-v2", "auto", "cpu", 64, cache)
        assert isinstance(chosen, CpuEmbedder) and isinstance(chosen.backend, OnnxEmbedder)
    assert chosen.backend.graph.name == onnx_embedder.graph.name
    assert "fp32-opt graph of sentence-transformers/all-MiniLM-L6-v2 differs" in caplog.text
