"""Decode speed and time to first token: through Outpost's local API vs raw llama-cpp-python.

Both run in this process on the same GGUF (default: the bundled SmolLM2-135M Q4_1), same prompt,
same context size, greedy decoding with a fixed token budget, alternating runs so neither side gets
a warmer cache. The API side goes over real HTTP (uvicorn on 127.0.0.1, SSE streaming, the same path
the `openai` client takes); the raw side calls ``Llama.create_chat_completion(stream=True)``.

    python benchmarks/llm.py [--model smollm2|PATH.gguf] [--runs 5] [--max-tokens 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from outpost.api import create_app  # noqa: E402
from outpost.cpus import usable_cpus  # noqa: E402
from outpost.llm.bundled import resolve_gguf  # noqa: E402
from outpost.settings import Settings  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a bottle."},
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(stream) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(time to first token s, decode tokens/s after the first, tokens) for an iterator of text pieces."""
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for piece in stream:
        if not piece:
            continue
        now = time.perf_counter()
        if count == 0:
            first = now
        last = now
        count += 1
    decode = (count - 1) / (last - first) if count > 1 and last > first else 0.0
    return first - start, decode, count


def api_pieces(url: str, model: str, max_tokens: int):  # type: ignore[no-untyped-def]
    body = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or [{}]
                yield choices[0].get("delta", {}).get("content", "")


def raw_pieces(llm, max_tokens: int):  # type: ignore[no-untyped-def]
    llm.reset()
    for chunk in llm.create_chat_completion(MESSAGES, max_tokens=max_tokens, temperature=0.0, seed=0, stream=True):
        yield chunk["choices"][0]["delta"].get("content", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from llama_cpp import Llama

    path = resolve_gguf(args.model)
    threads = usable_cpus()  # what LlamaCppModel uses by default, so both sides run alike
    raw = Llama(model_path=str(path), n_ctx=args.ctx, n_threads=threads, verbose=False)
    home = Path(tempfile.mkdtemp(prefix="outpost-llm-bench-"))
    settings = Settings(home=home, llm_model=str(path), n_ctx=args.ctx)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"

    measure(api_pieces(url, str(path), 8))  # load the model behind the API and warm both sides
    measure(raw_pieces(raw, 8))
    rows: dict[str, list[tuple[float, float, int]]] = {"api": [], "raw": []}
    for _ in range(args.runs):
        rows["api"].append(measure(api_pieces(url, str(path), args.max_tokens)))
        rows["raw"].append(measure(raw_pieces(raw, args.max_tokens)))
    server.should_exit = True

    summary = {
        side: {
            "ttft_ms_median": 1000 * statistics.median(r[0] for r in runs),
            "decode_tok_s_median": statistics.median(r[1] for r in runs),
            "tokens_median": statistics.median(r[2] for r in runs),
        }
        for side, runs in rows.items()
    }
    summary["ratio"] = {
        "decode_api_over_raw": summary["api"]["decode_tok_s_median"] / summary["raw"]["decode_tok_s_median"],
        "ttft_api_over_raw": summary["api"]["ttft_ms_median"] / summary["raw"]["ttft_ms_median"],
    }
    meta = {
        "model": path.name,
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "n_ctx": args.ctx,
        "threads": threads,
    }
    if args.json:
        json.dump({**meta, **summary}, sys.stdout, indent=2)
        print()
        return
    print(f"model {path.name}, {args.runs} runs x {args.max_tokens} tokens, n_ctx {args.ctx}, {threads} threads")
    print(f"{'':18}{'TTFT ms':>10}{'decode tok/s':>14}{'tokens':>8}")
    for side, label in (("raw", "llama-cpp-python"), ("api", "Outpost API (SSE)")):
        s = summary[side]
        print(f"{label:18}{s['ttft_ms_median']:>10.1f}{s['decode_tok_s_median']:>14.1f}{s['tokens_median']:>8.0f}")
    r = summary["ratio"]
    print(f"ratio API/raw: decode {r['decode_api_over_raw']:.3f}, TTFT {r['ttft_api_over_raw']:.3f}")


if __name__ == "__main__":
    main()
