"""What kept `outpost serve`'s memory from staying flat under concurrent clients (docs/reliability.md, fixes 12
and 13), each pinned where it lives; the load proof itself is ``test_load.py``.

Both fail on the code before the fixes: 16 threads asking for the embedder at once built 16 of them (each its own
ONNX Runtime session, ~120 MB), and every llama.cpp generation left its sampler chain (12 bytes per vocabulary
entry: 3 MB on Gemma 3) for Python's cyclic GC.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from llama_cpp._internals import LlamaSampler

from outpost.embed.factory import load_embedder
from outpost.llm.base import GenerationParams
from outpost.llm.bundled import resolve_gguf
from outpost.llm.llamacpp import LlamaCppModel
from outpost.settings import Settings


def test_threads_asking_for_the_embedder_at_once_share_one(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", embed_batch_size=7)  # a key no other test has filled
    start = threading.Barrier(16)
    got: list[int] = []

    def ask() -> None:
        start.wait()
        got.append(id(load_embedder(settings)))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(got) == 16 and len(set(got)) == 1


def _live_samplers() -> int:
    """llama.cpp sampler chains still allocated (a closed ``LlamaSampler`` has freed its chain)."""
    return sum(1 for o in gc.get_objects() if isinstance(o, LlamaSampler) and o.sampler is not None)


def test_a_generation_frees_its_sampler_when_it_ends_or_is_abandoned() -> None:
    gc.collect()
    before = _live_samplers()
    gc.disable()  # what a busy server sees: the cyclic GC does not run between answers
    try:
        model = LlamaCppModel(resolve_gguf("smollm2"), n_ctx=512)
        params = GenerationParams(max_tokens=3, temperature=0)
        for i in range(3):
            assert list(model.stream([{"role": "user", "content": f"Say {i}."}], params))
        assert _live_samplers() == before
        stream = model.stream([{"role": "user", "content": "Count to ten."}], GenerationParams(max_tokens=20))
        next(stream)  # a client reads one piece and goes away: the server closes the generator
        stream.close()
        assert _live_samplers() == before
        assert model._lock.acquire(blocking=False), "an abandoned answer kept the model's queue locked"
        model._lock.release()
    finally:
        gc.enable()
