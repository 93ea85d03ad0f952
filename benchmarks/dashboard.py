"""The dashboard's cost over the API: time to first token on screen, and the Ask page's first load.

One process, one `outpost serve` app under uvicorn on 127.0.0.1, the bundled samples as a collection, the
bundled SmolLM2 (greedy), the same question and sources (``--top-k``); runs alternate between the two paths
so neither gets a warmer cache:

- **API** (the baseline): ``POST /v1/chat/completions`` with model ``rag:samples``, streamed, timed with httpx
  from sending the request to the first non-empty content delta (retrieval, prompt, first token: the same
  work the dashboard asks for).
- **Dashboard**: real headless Chromium (Debian's ``/usr/bin/chromium``) on the Ask page; timed inside the
  page from the form's submit event (pressing Ask) to the first answer text in the DOM (a MutationObserver).

Then the Ask page's first load: a fresh browser context per run (cold cache, new cookies), navigation
timing's ``loadEventEnd`` (HTML, CSS and both ES modules fetched and run), beside ``GET /health`` over httpx
(the loopback floor) measured in the same run.

    python benchmarks/dashboard.py [--runs 9] [--loads 15] [--json]
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
from typing import Any

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from _common import dump_json, log, machine, table
from outpost import Outpost  # noqa: E402
from outpost.api import create_app  # noqa: E402
from outpost.cli.local import sample_folder  # noqa: E402
from outpost.settings import Settings  # noqa: E402

CHROMIUM = os.environ.get("OUTPOST_CHROMIUM", "/usr/bin/chromium")  # the tests read the same variable
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "How many vacation days do new hires get?"
WATCH = """() => {
  window.__t = {};
  document.getElementById('ask-form').addEventListener('submit', () => { window.__t.submit = performance.now(); },
    {capture: true});
  new MutationObserver(() => {
    const a = document.querySelector('[data-testid=answer]');
    if (a && a.textContent.length && window.__t.first === undefined) window.__t.first = performance.now();
  }).observe(document.getElementById('answers'), {subtree: true, childList: true, characterData: true});
}"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_ttft(url: str, max_tokens: int) -> float:
    """Seconds from sending the request to the first streamed content (the API's own time to first token)."""
    body = {
        "model": "rag:samples",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    start = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if first is None and line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - start
    assert first is not None, "the API streamed no content"
    return first


def dashboard_ttft(page: Any) -> float:
    """Seconds from pressing Ask to the first answer text on screen, measured inside the page."""
    page.goto("/")
    page.evaluate(WATCH)
    page.select_option("[data-testid=collection-select]", ["samples"])
    page.select_option("[data-testid=model-select]", "smollm2")
    page.fill("[data-testid=question]", QUESTION)
    page.click("[data-testid=ask]")
    page.wait_for_selector("article.answer-card[data-done=true]", timeout=300_000)
    marks = page.evaluate("window.__t")
    return float(marks["first"] - marks["submit"]) / 1000


def first_load(browser: Any, url: str) -> float:
    """Seconds until the Ask page's load event, in a fresh context (nothing cached)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(url + "/", wait_until="load")
        return float(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")) / 1000
    finally:
        context.close()


def health(url: str) -> float:
    start = time.perf_counter()
    httpx.get(url + "/health").raise_for_status()
    return time.perf_counter() - start


def run(runs: int, loads: int, max_tokens: int, top_k: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="outpost-dash-bench-"))
    log("ingesting the bundled samples ...")
    Outpost(home=home).ingest(sample_folder(), collection="samples")
    settings = Settings(home=home, n_ctx=2048, max_tokens=max_tokens, temperature=0.0, top_k=top_k)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    api: list[float] = []
    dash: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        log("warming up (model load) ...")
        api_ttft(url, max_tokens)
        dashboard_ttft(page)
        for i in range(runs):
            log(f"run {i + 1}/{runs}")
            if i % 2:
                dash.append(dashboard_ttft(page))
                api.append(api_ttft(url, max_tokens))
            else:
                api.append(api_ttft(url, max_tokens))
                dash.append(dashboard_ttft(page))
        context.close()
        first_load(browser, url)  # warm the server's template cache, not the browser's
        loads_s = [first_load(browser, url) for _ in range(loads)]
        floor = [health(url) for _ in range(loads)]
        browser.close()
    server.should_exit = True
    ms = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
    return {
        "machine": machine(),
        "runs": runs,
        "loads": loads,
        "max_tokens": max_tokens,
        "top_k": top_k,
        "api_ttft_ms": ms(api),
        "dashboard_ttft_ms": ms(dash),
        "overhead_ms": round(ms(dash) - ms(api), 1),
        "overhead_goal_ms": 50,
        "page_first_load_ms": ms(loads_s),
        "page_first_load_p90_ms": round(sorted(loads_s)[int(0.9 * (len(loads_s) - 1))] * 1000, 1),
        "page_load_goal_ms": 300,
        "health_roundtrip_ms": ms(floor),
        "api_ttft_all_ms": [round(x * 1000, 1) for x in api],
        "dashboard_ttft_all_ms": [round(x * 1000, 1) for x in dash],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="asks per path (alternating)")
    parser.add_argument("--loads", type=int, default=15, help="fresh-context page loads")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer (only the first matters)")
    parser.add_argument(
        "--top-k", type=int, default=2, help="sources in the prompt (fewer: less prompt time, so less noise)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    r = run(args.runs, args.loads, args.max_tokens, args.top_k)
    if args.json:
        print(dump_json(r))
        return
    m = r["machine"]
    print("Outpost dashboard benchmark")
    print(f"machine: {m['cores']} cores, {m['cpu']}; load avg {m['loadavg_1m_at_start']}; {m['date_utc']} UTC")
    print(f"SmolLM2-135M Q4_1, greedy, rag:samples, top {r['top_k']} sources, {r['runs']} alternating runs; medians")
    print(f"per run, API: {r['api_ttft_all_ms']}\nper run, dashboard: {r['dashboard_ttft_all_ms']}\n")
    rows = [
        ("time to first token: API (/v1/chat/completions, SSE)", f"{r['api_ttft_ms']} ms", "baseline"),
        ("time to first token: dashboard (Ask pressed → text on screen)", f"{r['dashboard_ttft_ms']} ms", ""),
        ("dashboard overhead", f"{r['overhead_ms']} ms", f"goal ≤ {r['overhead_goal_ms']} ms"),
        ("Ask page first load (fresh context, load event)", f"{r['page_first_load_ms']} ms", "goal ≤ 300 ms"),
        ("  p90", f"{r['page_first_load_p90_ms']} ms", ""),
        ("GET /health round trip (loopback floor)", f"{r['health_roundtrip_ms']} ms", "baseline"),
    ]
    print(table(rows, ("measure", "value", "")))


if __name__ == "__main__":
    main()
