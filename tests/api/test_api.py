"""The local API driven by the official `openai` and `ollama` client libraries, against a real server
(uvicorn on 127.0.0.1) with the real bundled SmolLM2 through llama.cpp."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest

from hubkit import ServerThread
from outpost import Outpost
from outpost.api import create_app
from outpost.feedback import FeedbackQueue
from outpost.models.registry import Registry
from outpost.settings import Settings

pytestmark = pytest.mark.slow

FAST = {"temperature": 0.0, "seed": 0, "max_tokens": 12}


class ApiServer(ServerThread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings))
        self.home = settings.home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("api-home")
    Outpost(home=home).ingest(sample_dir, collection="samples")
    modelfile = home / "Modelfile"
    modelfile.write_text(
        'FROM smollm2\nSYSTEM """You are Mario from super mario bros, acting as an assistant."""\n'
        "PARAMETER temperature 0.1\nPARAMETER num_predict 6\n"
    )
    from outpost.models.modelfile import load_modelfile

    registry = Registry(home)
    registry.derive("mario", registry.get("smollm2"), load_modelfile(modelfile).to_text())
    with ApiServer(Settings(home=home, n_ctx=1024)) as running:
        yield running


@pytest.fixture(scope="module")
def oai(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")


@pytest.fixture(scope="module")
def oll(server: ApiServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_openai_models_lists_registry_and_rag_collections(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"smollm2", "mario", "rag:samples"} <= ids


def test_openai_chat_completion_and_stream_agree(oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    full = oai.chat.completions.create(model="smollm2", messages=messages, **FAST)
    text = full.choices[0].message.content
    assert text and full.choices[0].finish_reason in ("stop", "length")
    assert full.usage.prompt_tokens > 0 and 0 < full.usage.completion_tokens <= 12
    pieces = [
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(model="smollm2", messages=messages, stream=True, **FAST)
        if c.choices
    ]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == text  # same seed, temperature 0: the same answer


def test_openai_completions_and_embeddings(oai: openai.OpenAI, server: ApiServer) -> None:
    done = oai.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=5, temperature=0)
    assert done.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in oai.completions.create(
            model="smollm2", prompt="The capital of France is", max_tokens=5, temperature=0, stream=True
        )
    )
    assert streamed == done.choices[0].text
    emb = oai.embeddings.create(  # the client asks for base64 by default
        model="all-MiniLM-L6-v2", input=["vacation days", "holiday allowance", "database index rebuild"]
    )
    floats = oai.embeddings.create(model="all-MiniLM-L6-v2", input="vacation days", encoding_format="float")
    a, b, c = (np.array(d.embedding) for d in emb.data)
    assert a.shape == (384,) and abs(np.linalg.norm(a) - 1) < 1e-4
    assert np.allclose(a, floats.data[0].embedding, atol=1e-6)
    ours = Outpost(home=Path("/nonexistent")).embedder().embed(["vacation days"])[0]
    assert np.allclose(a, ours, atol=1e-5) and float(a @ b) > float(a @ c) + 0.2


def test_ollama_tags_show_chat_generate_embed(oll: ollama.Client, server: ApiServer) -> None:
    names = {m.model for m in oll.list().models}
    assert {"smollm2", "mario"} <= names
    shown = oll.show("smollm2")
    assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1"
    assert "<|im_start|>" in shown.template
    opts = {"temperature": 0, "seed": 0, "num_predict": 10}
    reply = oll.chat(model="smollm2", messages=[{"role": "user", "content": "Say hello."}], options=opts)
    assert reply.message.content and reply.done and reply.eval_count <= 10
    parts = list(
        oll.chat(model="smollm2", messages=[{"role": "user", "content": "Say hello."}], options=opts, stream=True)
    )
    assert parts[-1].done and "".join(p.message.content for p in parts) == reply.message.content
    gen = oll.generate(model="smollm2", prompt="Say hello.", options=opts)
    assert gen.response and gen.done
    assert (
        "".join(p.response for p in oll.generate(model="smollm2", prompt="Say hello.", options=opts, stream=True))
        == gen.response
    )
    vectors = oll.embed(model="all-minilm", input=["a", "b"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert httpx.get(f"{server.url}/api/version").json()["version"]


def test_rag_model_answers_with_sources(server: ApiServer) -> None:
    body = {
        "model": "rag:samples",
        "messages": [{"role": "user", "content": "How many vacation days do new hires get?"}],
        **FAST,
    }
    data = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).json()
    assert data["choices"][0]["message"]["content"]
    assert data["sources"][0]["document"] == "employee-handbook.md" and data["sources"][0]["number"] == 1
    chat = httpx.post(
        f"{server.url}/api/chat", json={**body, "stream": False, "options": {"num_predict": 8}}, timeout=120
    ).json()
    assert chat["sources"][0]["document"] == "employee-handbook.md"
    # a vote on that answer through the API lands in the local queue that `outpost sync` uploads
    vote = httpx.post(
        f"{server.url}/v1/feedback", json={"answer_id": data["answer_id"], "helpful": True, "sources": {"1": True}}
    )
    assert vote.status_code == 200 and vote.json()["queued"]
    assert httpx.post(f"{server.url}/api/feedback", json={"answer_id": chat["answer_id"], "helpful": False}).is_success
    pending = {item.id: item for item in FeedbackQueue(server.home).pending()}
    assert pending[data["answer_id"]].answer_vote == 1 and pending[chat["answer_id"]].answer_vote == 0
    assert pending[data["answer_id"]].source_votes == {data["sources"][0]["chunk_id"]: 1}
    assert httpx.post(f"{server.url}/v1/feedback", json={"answer_id": "nope", "helpful": True}).status_code == 404


def test_a_derived_model_applies_its_system_prompt_and_parameters(oai: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Who are you?"}]
    mario = oai.chat.completions.create(model="mario", messages=question, seed=0)
    # The same request spelled out on the base model: Mario's SYSTEM, temperature 0.1, num_predict 6.
    system = {"role": "system", "content": "You are Mario from super mario bros, acting as an assistant."}
    spelled = oai.chat.completions.create(
        model="smollm2", messages=[system, *question], temperature=0.1, max_tokens=6, seed=0
    )
    plain = oai.chat.completions.create(model="smollm2", messages=question, max_tokens=6, seed=0)
    assert mario.usage.prompt_tokens == spelled.usage.prompt_tokens != plain.usage.prompt_tokens
    assert mario.usage.completion_tokens == 6 and mario.choices[0].finish_reason == "length"
    assert mario.choices[0].message.content == spelled.choices[0].message.content
    # A request's own value beats the Modelfile's PARAMETER.
    longer = oai.chat.completions.create(model="mario", messages=question, seed=0, max_tokens=9)
    assert longer.usage.completion_tokens == 9


def test_ollamas_no_limit_num_predict_means_the_models_own_limit(oll: ollama.Client) -> None:
    """num_predict -1 / -2 (Ollama's "no limit", "fill the context") and 0 leave the model's limit in place — mario's
    Modelfile says 6 — instead of reaching llama.cpp as "generate until the context is full"."""
    question = [{"role": "user", "content": "Who are you?"}]
    for value in (-1, -2, 0):
        reply = oll.chat(model="mario", messages=question, options={"seed": 0, "num_predict": value})
        assert reply.eval_count == 6 and reply.done_reason == "length", (value, reply)
    assert oll.chat(model="mario", messages=question, options={"seed": 0, "num_predict": 3}).eval_count == 3


def test_errors_have_each_dialects_shape(server: ApiServer) -> None:
    url = server.url
    missing = httpx.post(f"{url}/v1/chat/completions", json={"model": "nope", "messages": []})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    assert missing.json()["error"]["type"] == "not_found_error"
    o_missing = httpx.post(f"{url}/api/chat", json={"model": "nope", "messages": [], "stream": False})
    assert o_missing.status_code == 404 and "nope" in o_missing.json()["error"]
    bad_json = httpx.post(
        f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]["message"]
    no_messages = httpx.post(f"{url}/v1/chat/completions", json={"model": "smollm2"})
    assert no_messages.status_code == 422 and "messages" in no_messages.json()["error"]["message"]
    o_bad = httpx.post(f"{url}/api/chat", content=b"[", headers={"content-type": "application/json"})
    assert o_bad.status_code == 400 and isinstance(o_bad.json()["error"], str)
    long = {"model": "smollm2", "messages": [{"role": "user", "content": "word " * 3000}]}
    too_long = httpx.post(f"{url}/v1/chat/completions", json=long, timeout=60)
    assert too_long.status_code == 400 and "context" in too_long.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="x").chat.completions.create(model="nope", messages=[])
    with pytest.raises(ollama.ResponseError):
        ollama.Client(host=url).chat(model="nope", messages=[])


def test_concurrent_requests_queue_safely(oai: openai.OpenAI) -> None:
    results: list[str] = []

    def ask() -> None:
        r = oai.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Count to three."}], **FAST
        )
        results.append(r.choices[0].message.content or "")

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1  # same seed, same answer, no interleaving


def test_api_key_is_enforced_when_set(tmp_path: Path) -> None:
    with ApiServer(Settings(home=tmp_path, api_key="s3cret")) as secured:
        assert httpx.get(f"{secured.url}/v1/models").status_code == 401
        assert httpx.get(f"{secured.url}/api/tags").status_code == 401
        assert httpx.get(f"{secured.url}/health").status_code == 200
        ok = openai.OpenAI(base_url=f"{secured.url}/v1", api_key="s3cret").models.list()
        assert any(m.id == "smollm2" for m in ok)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{secured.url}/v1", api_key="wrong").models.list()


# -- sampling fields the API accepts are honoured (stop, top_k, min_p) --------------------------------------------

COUNT = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
GREEDY = {"temperature": 0.0, "seed": 0}


def _cut(text: str) -> tuple[str, str]:
    """A stop sequence taken from the middle of ``text``, and the text before its first occurrence."""
    middle = text[len(text) // 2 :].strip()
    stop = middle[:2]
    assert stop.strip() and text.index(stop) > 0, text
    return stop, text[: text.index(stop)]


def test_stop_ends_the_answer_in_both_dialects(oai: openai.OpenAI, oll: ollama.Client) -> None:
    """Greedy decoding with a stop sequence taken from the unstopped answer: the answer is cut right before it."""
    full = oai.chat.completions.create(model="smollm2", messages=COUNT, max_tokens=24, **GREEDY)
    text = full.choices[0].message.content or ""
    stop, before = _cut(text)
    cut = oai.chat.completions.create(model="smollm2", messages=COUNT, max_tokens=24, stop=stop, **GREEDY)
    assert cut.choices[0].message.content == before and cut.choices[0].finish_reason == "stop"
    listed = oai.chat.completions.create(model="smollm2", messages=COUNT, max_tokens=24, stop=["@@", stop], **GREEDY)
    assert listed.choices[0].message.content == before
    streamed = oai.chat.completions.create(
        model="smollm2", messages=COUNT, max_tokens=24, stop=stop, stream=True, **GREEDY
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == before

    options = {**GREEDY, "num_predict": 24}
    assert oll.chat(model="smollm2", messages=COUNT, options=options).message.content == text
    o_cut = oll.chat(model="smollm2", messages=COUNT, options={**options, "stop": [stop]})
    assert o_cut.message.content == before and o_cut.done_reason == "stop"
    o_gen = oll.generate(model="smollm2", prompt=COUNT[0]["content"], options={**options, "stop": [stop]})
    assert o_gen.response == before


def test_stop_ends_raw_completions_in_both_dialects(oai: openai.OpenAI, oll: ollama.Client) -> None:
    prompt = "1, 2, 3, 4, 5,"
    text = oai.completions.create(model="smollm2", prompt=prompt, max_tokens=16, temperature=0, seed=0).choices[0].text
    stop, before = _cut(text)
    cut = oai.completions.create(model="smollm2", prompt=prompt, max_tokens=16, temperature=0, seed=0, stop=[stop])
    assert cut.choices[0].text == before
    raw = oll.generate(model="smollm2", prompt=prompt, raw=True, options={**GREEDY, "num_predict": 16, "stop": [stop]})
    assert raw.response == before


def test_top_k_and_min_p_reach_the_sampler(oai: openai.OpenAI, oll: ollama.Client) -> None:
    """At temperature 5 with every other cut off, sampling is near-uniform, so seeds disagree with greedy
    decoding; top_k 1 or min_p 1 leave only the likeliest token, so any seed gives the greedy answer."""
    greedy = oai.chat.completions.create(model="smollm2", messages=COUNT, max_tokens=12, **GREEDY)
    expected = greedy.choices[0].message.content
    hot = {"temperature": 5.0, "top_p": 1.0, "max_tokens": 12}
    open_ = {"top_k": 0, "min_p": 0.0}

    def openai_reply(seed: int, extra: dict[str, float]) -> str | None:
        reply = oai.chat.completions.create(model="smollm2", messages=COUNT, seed=seed, extra_body=extra, **hot)
        return reply.choices[0].message.content

    assert {openai_reply(seed, open_) for seed in (1, 2)} != {expected}  # the control: randomness is on
    for seed in (1, 2):
        assert openai_reply(seed, {**open_, "top_k": 1}) == expected
        assert openai_reply(seed, {**open_, "min_p": 1.0}) == expected
    options = {"temperature": 5.0, "top_p": 1.0, "num_predict": 12, **open_}
    for seed in (1, 2):
        for cut in ({"top_k": 1}, {"min_p": 1.0}):
            reply = oll.chat(model="smollm2", messages=COUNT, options={**options, **cut, "seed": seed})
            assert reply.message.content == expected


def test_bad_sampling_values_are_refused_in_each_dialects_shape(server: ApiServer) -> None:
    url = server.url
    base = {"model": "smollm2", "messages": COUNT}
    refusals = [({"stop": ""}, "stop"), ({"stop": ["ok", ""]}, "stop"), ({"top_k": -1}, "top_k")]
    refusals += [({"max_tokens": n}, "max_tokens") for n in (0, -1)] + [({"max_completion_tokens": -5}, "max_comp")]
    for bad, field in refusals:
        refused = httpx.post(f"{url}/v1/chat/completions", json={**base, **bad})
        assert refused.status_code == 422 and field in refused.json()["error"]["message"], refused.text
    assert httpx.post(f"{url}/v1/completions", json={"model": "smollm2", "prompt": "x", "min_p": 2}).status_code == 422
    minus = httpx.post(f"{url}/v1/completions", json={"model": "smollm2", "prompt": "x", "max_tokens": -1})
    assert minus.status_code == 422 and "max_tokens" in minus.json()["error"]["message"], minus.text
    o_refused = httpx.post(f"{url}/api/chat", json={**base, "stream": False, "options": {"min_p": 1.5}})
    assert o_refused.status_code == 422 and "min_p" in o_refused.json()["error"]
    o_stop = httpx.post(f"{url}/api/generate", json={"model": "smollm2", "prompt": "x", "options": {"stop": [""]}})
    assert o_stop.status_code == 422 and "stop" in o_stop.json()["error"]
