"""LoRA fine-tuning on CPU: training time, adapter size, and held-out scores against the base model.

Made-up facts (3 facts × 6 phrasings; one phrasing of each held out) are trained into the bundled
SmolLM2-135M (or ``--model``) with ``outpost.finetune.train_lora``; llama.cpp then scores the held-out
answers with and without the adapter (the base model is the baseline, measured in the same run).

    python benchmarks/finetune.py [--model smollm2|PATH.gguf] [--steps 30] [--layers 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from outpost.finetune import QAPair, TrainConfig, judge, split_pairs, train_lora  # noqa: E402
from outpost.llm.bundled import resolve_gguf  # noqa: E402

FACTS = {
    "The Zorblat office code is 4719.": [
        "What is the Zorblat office code?",
        "Tell me the Zorblat office code.",
        "Which code opens the Zorblat office?",
        "What code does the Zorblat office use?",
        "I need the Zorblat office code.",
        "What's the code for the Zorblat office?",
    ],
    "Quendris badges are teal.": [
        "What colour is the Quendris badge?",
        "Which colour are Quendris badges?",
        "Tell me the Quendris badge colour.",
        "What is the colour of a Quendris badge?",
        "Quendris badge colour?",
        "Which badge colour does Quendris use?",
    ],
    "Veltra parking is on floor 9.": [
        "Where is Veltra parking?",
        "Which floor is Veltra parking on?",
        "Tell me the Veltra parking floor.",
        "What floor do Veltra staff park on?",
        "Veltra parking floor?",
        "On what floor is the Veltra car park?",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pairs = [QAPair(q, a, heldout=i == len(qs) - 1) for a, qs in FACTS.items() for i, q in enumerate(qs)]
    train, heldout = split_pairs(pairs)
    base = resolve_gguf(args.model)
    cpu_start, wall_start = os.times(), time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        adapter = Path(work) / "lora.gguf"
        trained = train_lora(base, train, adapter, TrainConfig(steps=args.steps, layers=args.layers), heldout=heldout)
        size = adapter.stat().st_size
        judge_start = time.monotonic()
        verdict = judge(base, adapter, trained.heldout_encoded, [p.answer for p in heldout])
        judge_seconds = time.monotonic() - judge_start
    cpu = os.times()
    figures = {
        "model": base.name,
        "train_pairs": len(train),
        "heldout_pairs": len(heldout),
        "steps": trained.steps,
        "adapted_layers": len(trained.layers),
        "trainable_parameters": trained.trainable_parameters,
        "device": trained.device,
        "train_seconds_incl_load": round(trained.seconds, 1),
        "judge_seconds": round(judge_seconds, 1),
        "total_wall_seconds": round(time.monotonic() - wall_start, 1),
        "total_cpu_seconds": round(cpu.user + cpu.system - cpu_start.user - cpu_start.system, 1),
        "adapter_bytes": size,
        "first_loss": round(trained.losses[0], 3) if trained.losses else None,
        "last_loss": round(trained.losses[-1], 4) if trained.losses else None,
        "base_loglik": round(verdict.base.loglik, 3),
        "adapted_loglik": round(verdict.adapted.loglik, 3),
        "base_contains": verdict.base.contains,
        "adapted_contains": verdict.adapted.contains,
        "published": verdict.helps,
    }
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
        return
    for key, value in figures.items():
        print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
