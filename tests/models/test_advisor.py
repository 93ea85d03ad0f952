"""The hardware advisor: placement, context, speed and the arithmetic it shows, on synthetic machines.

No GPU is needed: the profiles ``laptop-8gb``, ``gpu-24gb`` and ``h100-80gb`` stand in for real machines,
and the one real model is the bundled SmolLM2 GGUF (only its header is read).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from outpost.cpus import physical_cores, usable_cpus
from outpost.errors import ConfigError, LoadError, ModelNotFoundError
from outpost.models.advisor import (
    ALL_LAYERS,
    CPU_EFFICIENCY,
    GPU,
    GPU_EFFICIENCY,
    PROFILES,
    QUANT_LADDER,
    Hardware,
    ModelSpec,
    bits_per_weight,
    candidate_quants,
    detect_hardware,
    estimate_memory,
    estimate_speed,
    gpu_bandwidth_gbs,
    kv_cache_bytes,
    offload_layers,
    plan,
    ram_budget_bytes,
    recommend,
    spec_from_size,
    vram_budget_bytes,
    weights_bytes,
)

GB = 1e9


@pytest.fixture
def laptop() -> Hardware:
    return Hardware.profile("laptop-8gb")


@pytest.fixture
def gpu24() -> Hardware:
    return Hardware.profile("gpu-24gb")


@pytest.fixture
def h100() -> Hardware:
    return Hardware.profile("h100-80gb")


@pytest.fixture(scope="module")
def smollm2() -> ModelSpec:
    from outpost.llm.bundled import resolve_gguf

    return ModelSpec.from_gguf(resolve_gguf("smollm2"))


# --- the three machines --------------------------------------------------------------------------------


def test_laptop_runs_7b_q4_on_cpu_at_4096_ctx_a_few_tokens_per_s(laptop: Hardware) -> None:
    p = plan(laptop, ModelSpec.from_params(7, "Q4_K_M"))
    assert p.fits and p.where == "cpu" and p.gpu_layers == 0
    assert p.n_ctx >= 4096
    assert 2 <= p.tokens_per_s <= 20  # 50 GB/s × 0.6 / ~4.8 GB per token ≈ 6
    assert p.memory.cpu_bytes <= ram_budget_bytes(laptop)


def test_laptop_cannot_run_32b_and_says_why(laptop: Hardware) -> None:
    p = plan(laptop, ModelSpec.from_params(32, "Q4_K_M"))
    assert not p.fits and p.where == "none" and p.tokens_per_s == 0
    assert "does not fit" in p.reason
    assert f"weights {weights_bytes(p.spec) / GB:.2f} GB" in p.reason  # the number that sinks it
    assert f"RAM budget {ram_budget_bytes(laptop) / GB:.2f} GB" in p.reason
    assert "smaller model" in p.reason  # even Q2_K (13 GB) is too big for 6 GB


def test_24gb_gpu_runs_7b_fully_on_gpu(gpu24: Hardware) -> None:
    p = plan(gpu24, ModelSpec.from_params(7))
    assert p.fits and p.where == "gpu" and p.gpu_layers == p.spec.n_layers == 32
    assert p.memory.gpu_bytes <= vram_budget_bytes(gpu24)
    assert p.tokens_per_s > 50  # ~1008 GB/s × 0.7 / ~4.8 GB
    assert p.n_ctx >= 4096


def test_24gb_gpu_runs_32b_q4_fully_or_nearly_on_gpu(gpu24: Hardware) -> None:
    p = plan(gpu24, ModelSpec.from_params(32, "Q4_K_M"))
    assert p.fits and p.where in ("gpu", "partial")
    assert p.gpu_layers >= 0.8 * p.spec.n_layers
    text = "\n".join(p.explain())
    if p.where == "gpu":
        assert f"all {p.spec.n_layers} layers" in text
    else:
        assert f"{p.gpu_layers} layers fit on the GPU" in text
    assert p.memory.gpu_bytes <= vram_budget_bytes(gpu24)


def test_24gb_gpu_runs_70b_q4_partly_offloaded(gpu24: Hardware) -> None:
    p = plan(gpu24, ModelSpec.from_params(70, "Q4_K_M"))
    n = p.spec.n_layers
    assert p.fits and p.where == "partial"
    assert 1 <= p.gpu_layers <= n - 1 and p.cpu_layers == n - p.gpu_layers
    assert p.memory.gpu_bytes <= vram_budget_bytes(gpu24)
    assert p.memory.cpu_bytes <= ram_budget_bytes(gpu24)
    assert p.memory.gpu_bytes + p.memory.cpu_bytes == p.memory.total
    text = "\n".join(p.explain())
    assert f"other {n - p.gpu_layers} layers in RAM" in text
    assert f"{p.gpu_layers}/{n} layers on GPU" in text
    assert p.tokens_per_s < 5  # most bytes come from RAM at 60 GB/s


def test_h100_runs_70b_q4_fully_on_gpu(h100: Hardware) -> None:
    p = plan(h100, ModelSpec.from_params(70, "Q4_K_M"))
    assert p.fits and p.where == "gpu" and p.gpu_layers == 80
    assert p.tokens_per_s > 30  # 3350 GB/s × 0.7 / ~44 GB ≈ 53


def test_context_requested_is_used_and_index_shrinks_the_budget(laptop: Hardware, h100: Hardware) -> None:
    assert plan(h100, ModelSpec.from_params(7), n_ctx=8192).n_ctx == 8192
    spec = ModelSpec.from_params(7)
    roomy = plan(laptop, spec)
    crowded = plan(laptop, spec, index_bytes=int(1e9))  # 1 GB of vectors leaves room for 2048 ctx only
    assert crowded.fits and crowded.n_ctx < roomy.n_ctx
    assert crowded.memory.vector_index == int(1e9)
    assert any("vector index" in line for line in crowded.explain())
    assert not plan(laptop, spec, index_bytes=int(7e9)).fits


# --- memory against rules of thumb and published files --------------------------------------------------


@pytest.mark.parametrize("params_b", [7, 32, 405])
def test_memory_within_15_percent_of_rule_of_thumb(params_b: float) -> None:
    # Rule of thumb tested against: weights ≈ params × 4.85 bits / 8 bytes (Q4_K_M), plus the KV cache at
    # 4096 ctx computed from the shape by hand (2 × layers × ctx × kv heads × head dim × 2 bytes, f16).
    spec = ModelSpec.from_params(params_b, "Q4_K_M")
    est = estimate_memory(spec, 4096)
    layers = {7: 32, 32: 64, 405: 126}[params_b]
    rule = params_b * 1e9 * 4.85 / 8 + 2 * layers * 4096 * 8 * 128 * 2
    assert est.total == pytest.approx(rule, rel=0.15)
    assert est.weights + est.kv_cache == pytest.approx(rule, rel=0.01)


def test_7b_q4_k_m_weights_match_the_usual_4_2_to_4_4_gb() -> None:
    assert 4.2 * GB <= weights_bytes(ModelSpec.from_params(7, "Q4_K_M")) <= 4.4 * GB


@pytest.mark.parametrize(
    ("params_b", "published_gb"),
    [(8.03, 4.92), (32.76, 19.9), (405.85, 243.0)],  # Llama-3-8B, Qwen2.5-32B, Llama-3.1-405B at Q4_K_M
)
def test_weights_within_15_percent_of_published_gguf_sizes(params_b: float, published_gb: float) -> None:
    assert weights_bytes(ModelSpec.from_params(params_b, "Q4_K_M")) == pytest.approx(published_gb * GB, rel=0.15)


def test_kv_cache_formula() -> None:
    llama3_8b = ModelSpec.from_params(8)  # 32 layers, 8 kv heads × 128 dims
    assert kv_cache_bytes(llama3_8b, 8192) == 2 * 32 * 8192 * 8 * 128 * 2 == 1 << 30
    assert kv_cache_bytes(llama3_8b, 8192, "q8_0") == pytest.approx((1 << 30) * 34 / 32 / 2)
    with pytest.raises(ConfigError):
        kv_cache_bytes(llama3_8b, 8192, "f8")


def test_quant_table_and_weights_from_file_size() -> None:
    assert bits_per_weight("q4_k_m") == 4.85 and bits_per_weight("Q8_0") == 8.5 and bits_per_weight("F16") == 16
    with pytest.raises(ConfigError, match="Q4_K_M"):
        bits_per_weight("Q4_K_XL")
    exact = ModelSpec.from_params(7)
    assert weights_bytes(ModelSpec(**{**exact.__dict__, "file_bytes": 4_000_000_000})) == 4_000_000_000


def test_shapes_follow_the_table() -> None:
    shapes = {
        b: (s.n_layers, s.n_embd, s.n_head, s.n_head_kv)
        for b in (7, 14, 32, 70, 405)
        for s in [ModelSpec.from_params(b)]
    }
    assert shapes == {
        7: (32, 4096, 32, 8),
        14: (40, 5120, 40, 8),
        32: (64, 5120, 40, 8),
        70: (80, 8192, 64, 8),
        405: (126, 16384, 128, 8),
    }
    assert ModelSpec.from_params(8).head_dim == 128


def test_spec_from_size() -> None:
    assert spec_from_size("32B").params == 32e9  # type: ignore[union-attr]
    assert spec_from_size("32b:q8_0").quant == "Q8_0"  # type: ignore[union-attr]
    assert spec_from_size("135M").params == pytest.approx(135e6)  # type: ignore[union-attr]
    assert spec_from_size("smollm2") is None


# --- quants and ranking --------------------------------------------------------------------------------


def test_32b_fits_the_gpu_at_q4_k_m_but_not_q8_0(gpu24: Hardware) -> None:
    plans = {p.spec.quant: p for p in recommend(gpu24, candidate_quants(32))}
    assert [s.quant for s in candidate_quants(32)] == list(QUANT_LADDER)
    assert plans["Q4_K_M"].where == "gpu"
    assert plans["Q8_0"].where != "gpu"
    assert plans["Q8_0"].tokens_per_s < plans["Q4_K_M"].tokens_per_s
    best = plan(gpu24, candidate_quants(32) + candidate_quants(7))
    assert best.spec.params == 32e9 and best.spec.quant == "Q4_K_M" and best.where == "gpu"


def test_does_not_fit_suggests_a_smaller_quant(laptop: Hardware) -> None:
    p = plan(laptop, ModelSpec.from_params(7, "Q8_0"))
    assert not p.fits
    hinted = p.reason.split("would fit at ")[1].split()[0]
    assert bits_per_weight(hinted) < 8.5
    assert plan(laptop, ModelSpec.from_params(7, hinted)).fits


def test_recommend_puts_the_largest_usable_model_first(laptop: Hardware) -> None:
    candidates = [ModelSpec.from_params(b) for b in (0.5, 3, 7, 32)]
    ranked = recommend(laptop, candidates)
    assert [p.spec.params_b for p in ranked] == [3, 0.5, 7, 32]  # 3B and 0.5B usable; 7B fits but slow
    assert ranked[0].usable and not ranked[2].usable and ranked[2].fits and not ranked[3].fits
    with pytest.raises(ConfigError):
        plan(laptop, [])


# --- speed ---------------------------------------------------------------------------------------------


def test_partial_offload_time_adds_gpu_and_cpu_parts(gpu24: Hardware) -> None:
    spec = ModelSpec.from_params(70)
    speed = estimate_speed(spec, gpu24, gpu_layers=40, n_ctx_filled=4096)
    per_token = weights_bytes(spec) + kv_cache_bytes(spec, 4096)
    expected = (per_token / 2) / (GPU_EFFICIENCY * 1008e9) + (per_token / 2) / (CPU_EFFICIENCY * 60e9)
    assert speed.seconds_per_token == pytest.approx(expected, rel=1e-6)
    assert speed.tokens_per_s == pytest.approx(1 / expected, rel=1e-6)


def test_moe_reads_only_its_active_experts(laptop: Hardware) -> None:
    dense = ModelSpec.from_params(30)
    moe = ModelSpec(**{**dense.__dict__, "active_params": 3e9})
    assert estimate_speed(moe, laptop).tokens_per_s > 5 * estimate_speed(dense, laptop).tokens_per_s


# --- explanations --------------------------------------------------------------------------------------


def test_explain_shows_the_numbers_it_used(laptop: Hardware) -> None:
    p = plan(laptop, ModelSpec.from_params(7, "Q4_K_M"))
    text = "\n".join(p.explain())
    weights = weights_bytes(p.spec)
    assert f"7e9 params × 4.85 bits (Q4_K_M) / 8 = {weights / GB:.2f} GB" in text
    assert p.n_ctx == 4096 and kv_cache_bytes(p.spec, 4096) == 536_870_912  # under 1 GB: printed in MB
    assert "2 × 32 layers × 4096 ctx × 8 kv heads × 128 dims × 2 bytes (f16) = 537 MB" in text
    assert f"RAM budget {ram_budget_bytes(laptop) / GB:.2f} GB" in text
    assert f"{CPU_EFFICIENCY:g} × 50 GB/s" in text
    assert f"{p.tokens_per_s:.1f} tokens/s" in text
    assert "total: " in text and f"{p.memory.total / GB:.2f} GB" in text
    assert text.splitlines()[-1] == f"verdict: {p.reason}"


# --- real files and this machine -----------------------------------------------------------------------


def test_bundled_smollm2_header(smollm2: ModelSpec, laptop: Hardware) -> None:
    assert smollm2.params == pytest.approx(135e6, rel=0.10)
    assert smollm2.n_layers == 30 and smollm2.n_ctx_train == 8192
    assert (smollm2.n_head, smollm2.n_head_kv, smollm2.head_dim) == (9, 3, 64)
    assert smollm2.quant == "Q4_1" and smollm2.architecture == "llama"
    assert smollm2.file_bytes is not None and weights_bytes(smollm2) == smollm2.file_bytes
    p = plan(laptop, smollm2)
    assert p.fits and p.where == "cpu" and p.n_ctx == 8192
    assert p.tokens_per_s > 50


def test_from_gguf_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        ModelSpec.from_gguf(tmp_path / "absent.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(LoadError):
        ModelSpec.from_gguf(junk)


def test_detect_hardware_on_this_machine() -> None:
    hw = detect_hardware()
    assert hw.logical_cores >= 1 and 1 <= hw.physical_cores <= hw.logical_cores
    assert hw.ram_total_bytes > 1 * GB and 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.memory_bandwidth_gbs > 0 and hw.cpu_model
    assert hw.gpus == []  # no NVML here
    assert detect_hardware(memory_bandwidth_gbs=77).memory_bandwidth_gbs == 77


def test_detect_hardware_counts_the_cpus_this_process_may_use() -> None:
    hw = detect_hardware()
    assert (hw.logical_cores, hw.physical_cores) == (usable_cpus(), physical_cores())


def test_detect_hardware_survives_a_broken_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("pynvml")

    def fail() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    broken.nvmlInit = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert detect_hardware().gpus == []


def _fake_h100(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML answering like one H100 (no GPU can exist on the machines these tests run on)."""
    fake = types.ModuleType("pynvml")
    memory = types.SimpleNamespace(total=80 * 2**30, free=79 * 2**30, used=2**30)
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: memory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)


def test_detect_hardware_reads_gpus_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_h100(monkeypatch)
    assert detect_hardware().gpus == [GPU("NVIDIA H100 80GB HBM3", 80 * 2**30, 79 * 2**30, 3350.0)]


# --- the runtime's GPU layers ----------------------------------------------------------------------------


def test_offload_layers_follow_the_plan(caplog: pytest.LogCaptureFixture) -> None:
    from outpost.llm.bundled import resolve_gguf

    path = resolve_gguf("smollm2")
    assert offload_layers(path, 4096) == 0  # this machine: no GPU
    assert offload_layers(path, 4096, Hardware.profile("laptop-8gb")) == 0
    assert offload_layers(path, 4096, Hardware.profile("gpu-24gb")) == ALL_LAYERS  # output layer included
    small = Hardware.profile("gpu-24gb")
    small.gpus = [GPU("a small card", 2**30, int(0.6 * GB), 300.0)]
    partial = plan(small, ModelSpec.from_gguf(path), 4096)
    assert partial.where == "partial" and 0 < partial.gpu_layers < 30
    assert offload_layers(path, 4096, small) == partial.gpu_layers
    tiny = Hardware("tiny", 1, 1, 2 * 2**30, int(1.6 * GB), 10.0, [GPU("a tiny card", 2**30, int(0.3 * GB), 300.0)])
    assert offload_layers(path, 4096, tiny) == 0
    assert "does not fit" in caplog.text


@pytest.mark.slow
def test_the_runtime_is_loaded_with_the_plans_gpu_layers(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outpost.models.load import load_chat_model, unload_all
    from outpost.settings import Settings

    settings = Settings(home=home, llm_model="smollm2", n_ctx=2048)
    unload_all()
    try:
        on_cpu = load_chat_model(settings)
        assert on_cpu.llm.model_params.n_gpu_layers == 0  # type: ignore[attr-defined]
        unload_all()
        _fake_h100(monkeypatch)  # a CPU build of llama.cpp takes the setting and runs on the CPU anyway
        on_gpu = load_chat_model(settings)
        assert on_gpu.llm.model_params.n_gpu_layers == 0x7FFFFFFF  # type: ignore[attr-defined]  (-1: every layer)
    finally:
        unload_all()


def test_gpu_bandwidth_table() -> None:
    assert gpu_bandwidth_gbs("NVIDIA H100 80GB HBM3") == 3350
    assert gpu_bandwidth_gbs("NVIDIA H100 PCIe") == 2000
    assert gpu_bandwidth_gbs("NVIDIA H200") == 4800
    assert gpu_bandwidth_gbs("NVIDIA A100-SXM4-80GB") == 2039
    assert gpu_bandwidth_gbs("NVIDIA A100-PCIE-40GB") == 1555
    assert gpu_bandwidth_gbs("NVIDIA A10") == 600
    assert gpu_bandwidth_gbs("Tesla T4") == 320
    assert gpu_bandwidth_gbs("NVIDIA GeForce RTX 3090") == 936
    assert gpu_bandwidth_gbs("NVIDIA Some Future Card") == 300


def test_profiles_are_copies_and_unknown_names_fail() -> None:
    hw = Hardware.profile("gpu-24gb")
    hw.gpus.clear()
    assert PROFILES["gpu-24gb"].gpus  # the table is untouched
    with pytest.raises(ConfigError, match="laptop-8gb"):
        Hardware.profile("mainframe")
