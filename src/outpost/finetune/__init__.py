"""Fine-tune the answer model: LoRA on question/answer pairs, exported as a llama.cpp GGUF adapter.

The base weights exist only as a (quantised) GGUF, so training dequantises it with Transformers,
trains a small LoRA with PEFT (CPU for the bundled 135M model; CUDA and bf16 for 1–8B models), and
writes the adapter in llama.cpp's format (``outpost.models.lora_gguf``). Whether it helps is judged
by llama.cpp itself — the runtime laptops use — on held-out pairs (``judge``).

torch, transformers and peft are imported inside the functions that need them (the ``finetune``
extra), so importing this package costs nothing.
"""

from outpost.finetune.heldout import Judgement, judge
from outpost.finetune.pairs import QAPair, load_pairs, split_pairs
from outpost.finetune.train import TrainConfig, TrainedLora, train_lora

__all__ = [
    "Judgement",
    "QAPair",
    "TrainConfig",
    "TrainedLora",
    "judge",
    "load_pairs",
    "split_pairs",
    "train_lora",
]
