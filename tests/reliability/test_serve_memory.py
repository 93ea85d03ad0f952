"""What kept `outpost serve`'s memory from staying flat under concurrent clients (docs/reliability.md, fixes 12
and 13), each pinned where it lives; the load proof itself is ``test_load.py``.

Both fail on the code before the fixes: 16 threads asking for the embedder at once built 16 of them (each its own
ONNX Runtime session, ~120 MB), and every llama.cpp generation left its sampler chain (12 bytes per vocabulary
entry: 3 MB on Gemma 3) for Python's cyclic GC.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import ollama
import openai
from llama_cpp._internals import LlamaSampler

from outpost.embed.factory import load_embedder
from outpost.llm.base import GenerationParams
from outpost.llm.bundled import resolve_gguf
from outpost.llm.llamacpp import LlamaCppModel
from outpost.settings import Settings
from reliability._kit import outpost_env


def _objects_got_at_once(get: Callable[[], object], threads: int = 16, wait_s: float = 120) -> list[int]:
    """The ids of what ``get`` returned to ``threads`` threads released together (a server's first requests)."""
    start = threading.Barrier(threads)
    got: list[int] = []

    def one() -> None:
        start.wait()
        got.append(id(get()))

    running = [threading.Thread(target=one) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(wait_s)
    return got


def test_threads_asking_for_the_embedder_at_once_share_one(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", embed_batch_size=7)  # a key no other test has filled
    got = _objects_got_at_once(lambda: load_embedder(settings))
    assert len(got) == 16 and len(set(got)) == 1


def _live_samplers() -> int:
    """llama.cpp sampler chains still allocated (a closed ``LlamaSampler`` has freed its chain)."""
    return sum(1 for o in gc.get_objects() if type(o) is LlamaSampler and o.sampler is not None)  # no proxy touched


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


def test_an_answer_abandoned_mid_stream_does_not_hold_up_the_next(tmp_path: Path) -> None:
    """A client that reads one chunk of a streamed answer and goes away (both dialects), against a real
    ``outpost serve``: the next request to that model is answered at once. Before fix 15 the abandoned generation
    kept the model's lock until a garbage collection, and the next request waited (the 16-client proof stalled)."""
    from reliability.test_load import _log_tail, _serve  # the server helpers of the load proofs

    server, port = _serve(tmp_path / "home", "serve")
    url = f"http://127.0.0.1:{port}"
    try:
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120, max_retries=0)
        local = ollama.Client(host=url, timeout=120)
        long = [{"role": "user", "content": "Count from one to one hundred, in words."}]
        for _ in range(2):
            with chat.chat.completions.create(model="smollm2", messages=long, max_tokens=200, stream=True) as chunks:
                next(iter(chunks))  # one chunk, then the connection closes
            for _part in local.chat(model="smollm2", messages=long, stream=True, options={"num_predict": 200}):
                break  # the NDJSON stream is dropped the same way
            short = [{"role": "user", "content": "Say yes."}]
            reply = chat.chat.completions.create(model="smollm2", messages=short, max_tokens=2, temperature=0)
            assert reply.choices[0].message.content is not None, _log_tail(server)
    finally:
        server.kill()  # a stuck server (the old code) does not end on SIGTERM
        server.wait(30)


def test_an_ask_abandoned_in_the_dashboard_does_not_hold_up_the_next(tmp_path: Path) -> None:
    """The dashboard's Ask streams an answer too: a page closed mid-answer must free the model at once (fix 15's
    ``GenerationStream``), or the next request to that model waits for a garbage collection (times out on the
    old plain ``StreamingResponse``)."""
    import httpx

    from reliability.test_load import _log_tail, _serve

    home = tmp_path / "home"
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Counting\n\nThe numbers from one to one hundred are written out in words here.\n")
    ingest = subprocess.run(
        [sys.executable, "-m", "outpost", "ingest", str(folder), "-c", "notes"],
        env=outpost_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ingest.returncode == 0, ingest.stderr
    server, port = _serve(home, "serve")
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120) as browser:
            browser.get("/ui/collections", headers={"Accept": "text/html"})
            csrf = {"X-Outpost-CSRF": browser.cookies["outpost_csrf"]}
            question = "Count from one to one hundred, in words."
            body = {"question": question, "collections": ["notes"], "model": "smollm2"}
            for _ in range(2):
                with browser.stream("POST", "/ui/api/ask", json=body, headers=csrf) as events:
                    for line in events.iter_lines():
                        if line.startswith("event: token"):
                            break  # the page goes away mid-answer
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)
        short = [{"role": "user", "content": "Say yes."}]
        reply = chat.chat.completions.create(model="smollm2", messages=short, max_tokens=2, temperature=0)
        assert reply.choices[0].message.content is not None, _log_tail(server)
    finally:
        server.kill()
        server.wait(30)


def test_threads_opening_a_collection_at_once_share_one_store(tmp_path: Path) -> None:
    """A server's first concurrent requests to a collection: one open store, not one per thread (each its own
    SQLite connections and ANN index in memory)."""
    from outpost.app import Outpost

    op = Outpost(home=tmp_path / "home")
    op.store("notes", create=True)
    fresh = Outpost(home=tmp_path / "home")
    got = _objects_got_at_once(lambda: fresh.store("notes"), wait_s=60)
    assert len(got) == 16 and len(set(got)) == 1
