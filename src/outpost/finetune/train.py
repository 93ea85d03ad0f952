"""Train a LoRA adapter on question/answer pairs, starting from the GGUF the laptops run.

Transformers loads a llama-architecture GGUF by dequantising it (and undoing llama.cpp's q/k row
permutation), so training sees the very weights llama.cpp will add the adapter to. Only the answer
tokens (and the end-of-turn token that stops generation) are trained on; the prompt is the model's
own chat template, rendered by the tokenizer from the GGUF, which gives the same token ids as
llama.cpp's rendering. On CPU the adapter covers only the last few layers, so back-propagation stops
there (the bundled 135M model trains in well under a minute on two cores); with CUDA it covers every
layer, in bf16.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outpost.errors import ConfigError
from outpost.finetune.pairs import QAPair
from outpost.models.lora_gguf import LoraWeights, write_lora_gguf

__all__ = ["SUPPORTED_ARCHITECTURES", "TrainConfig", "TrainedLora", "encode_pair", "load_base", "train_lora"]

log = logging.getLogger(__name__)

# Architectures whose GGUF tensor layout (incl. the q/k permutation) the converter has been checked on.
SUPPORTED_ARCHITECTURES = ("llama",)
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 30
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 2e-3
    batch_size: int | None = None  # None: 8 on CPU, 32 on a GPU
    layers: int | None = None  # adapt the last N layers; None: 4 on CPU, all on a GPU
    targets: tuple[str, ...] = TARGETS
    seed: int = 0
    device: str | None = None  # None: cuda when available, else cpu


@dataclass
class TrainedLora:
    path: Path
    steps: int
    seconds: float
    device: str
    trainable_parameters: int
    layers: list[int]
    losses: list[float] = field(default_factory=list)
    heldout_encoded: list[tuple[list[int], int]] = field(default_factory=list)  # for ``judge``


def _require_extra() -> None:
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"Fine-tuning needs the finetune extra ({exc.name} is missing): pip install 'outpost[finetune]'"
        ) from None


def _device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(gguf: Path, device: str) -> tuple[Any, Any]:
    """(tokenizer, model) from a GGUF file, dequantised: float32 on CPU, bf16 on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    return tokenizer, model.to(device)


def encode_pair(tokenizer: Any, pair: QAPair) -> tuple[list[int], int]:
    """(token ids of prompt + answer + end of turn, number of prompt tokens)."""
    prompt = tokenizer.apply_chat_template(pair.messages(), add_generation_prompt=True, tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    answer = tokenizer(pair.answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return prompt + list(answer), len(prompt)


def _batch(encoded: list[tuple[list[int], int]], pad: int, device: str) -> dict[str, Any]:
    """Right-padded ids, attention mask and labels that score only the answer tokens."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (seq, n_prompt) in enumerate(encoded):
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
        mask[row, : len(seq)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def _lora_model(model: Any, config: TrainConfig, device: str) -> tuple[Any, list[int]]:
    from peft import LoraConfig, get_peft_model

    blocks = int(model.config.num_hidden_layers)
    default = blocks if device.startswith("cuda") else min(blocks, 4)
    count = min(blocks, config.layers or default)
    layers = list(range(blocks - count, blocks))
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,  # peft annotates int, but only computes alpha / r
        lora_dropout=0.0,
        target_modules=list(config.targets),
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), layers


def _lora_weights(peft_model: Any) -> dict[str, LoraWeights]:
    """Each adapted module's A and B, keyed by the base model's module name (``model.layers.N....``)."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            a = module.lora_A["default"].weight.detach().float().cpu().numpy()
            b = module.lora_B["default"].weight.detach().float().cpu().numpy()
            out[name.removeprefix("base_model.model.")] = LoraWeights(a, b)
    return out


class _Suffix:
    """Train only through the adapted layers: the frozen layers before them run once, not every step.

    The first ``first`` layers get no adapter, so their output for a training batch never changes; it is
    computed once (no gradients) and each step feeds it to the adapted layers alone, with the language
    model head applied only at answer positions. On CPU, with the last 4 of 30 layers adapted, a step
    runs 4 layers forward and back instead of 30 (the same loss to the last digit: checked against PEFT's).
    """

    def __init__(self, peft_model: Any, first: int) -> None:
        self.causal = peft_model.base_model.model  # e.g. LlamaForCausalLM, its modules wrapped in place
        self.body = self.causal.model
        self.first = first
        self.layers = self.body.layers

    def inputs(self, batch: dict[str, Any]) -> Any:
        """What the first adapted layer receives for ``batch`` (computed without gradients)."""
        import torch

        with torch.no_grad():
            if self.first == 0:
                return self.body.embed_tokens(batch["input_ids"])
            out = self.body(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
            )
            return out.hidden_states[self.first].detach()

    def loss(self, hidden_in: Any, batch: dict[str, Any]) -> Any:
        import torch

        self.body.layers = self.layers[self.first :]
        try:
            hidden = self.body(inputs_embeds=hidden_in, attention_mask=batch["attention_mask"]).last_hidden_state
        finally:
            self.body.layers = self.layers
        targets = batch["labels"][:, 1:]
        scored = targets != -100
        logits = self.causal.lm_head(hidden[:, :-1][scored])
        return torch.nn.functional.cross_entropy(logits.float(), targets[scored])


def _fit(
    peft_model: Any, batches: list[dict[str, Any]], first: int, config: TrainConfig, progress: Progress | None
) -> list[float]:
    import torch

    suffix = _Suffix(peft_model, first)
    cached = [suffix.inputs(b) for b in batches]
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    peft_model.train()
    losses = []
    for step in range(config.steps):
        # cosine decay to 10%: large early steps learn the facts, small late ones settle them
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * (0.55 + 0.45 * math.cos(math.pi * step / max(1, config.steps)))
        index = step % len(batches)
        loss = suffix.loss(cached[index], batches[index])
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress:
            progress("train", 1, config.steps)
    return losses


def train_lora(
    base: Path,
    pairs: list[QAPair],
    out: Path,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    heldout: list[QAPair] | None = None,
) -> TrainedLora:
    """Train a LoRA on ``pairs`` for the model in GGUF file ``base``; write it to ``out`` (a GGUF LoRA).

    ``heldout`` pairs are only tokenised (same tokenizer, same template), for ``judge`` to score.
    """
    from outpost.models.registry import gguf_metadata

    config = config or TrainConfig()
    meta = gguf_metadata(base)
    if meta["architecture"] not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(
            f"Fine-tuning supports {', '.join(SUPPORTED_ARCHITECTURES)} models; {base.name} is {meta['architecture']!r}"
        )
    if not pairs:
        raise ConfigError("No question/answer pairs to train on")
    _require_extra()
    import torch

    started = time.monotonic()
    torch.manual_seed(config.seed)
    device = _device(config.device)
    tokenizer, model = load_base(base, device)
    peft_model, layers = _lora_model(model, config, device)
    encoded = [encode_pair(tokenizer, p) for p in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = torch.randperm(len(encoded)).tolist()
    shuffled = [encoded[i] for i in order]
    size = config.batch_size or (32 if device.startswith("cuda") else 8)
    batches = [_batch(shuffled[i : i + size], pad, device) for i in range(0, len(shuffled), size)]
    losses = _fit(peft_model, batches, layers[0], config, progress)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    write_lora_gguf(
        out,
        _lora_weights(peft_model),
        alpha=config.alpha,
        arch=meta["architecture"],
        blocks=int(meta["layers"]),
        n_head=int(meta["heads"]),
        n_head_kv=int(meta["heads_kv"] or meta["heads"]),
        name=f"{meta['name'] or base.stem} LoRA",
    )
    seconds = time.monotonic() - started
    log.info("trained a rank-%d LoRA for %d steps on %s in %.1f s", config.rank, config.steps, device, seconds)
    held = [encode_pair(tokenizer, p) for p in heldout or []]
    return TrainedLora(out, config.steps, seconds, device, trainable, layers, losses, held)
