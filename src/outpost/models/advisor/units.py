"""Units and number formats shared by the advisor's explanations: every figure is printed the same way."""

from __future__ import annotations

__all__ = ["GB", "GIB", "gb", "params_text"]

GB = 1e9  # sizes are printed in decimal GB, like GGUF file sizes on model hubs
GIB = 1 << 30  # RAM modules and GPU memory are sold in GiB ("24 GB" RTX 4090 = 24 GiB)


def gb(n: float) -> str:
    """Bytes as a short decimal figure: MB under 1 GB, GB above."""
    if abs(n) < GB:
        return f"{n / 1e6:.0f} MB"
    return f"{n / GB:.2f} GB"


def params_text(n: float) -> str:
    """A parameter count the way the explanations print it: ``7.24e9``, ``135e6``."""
    return f"{n / 1e9:.3g}e9" if n >= 1e9 else f"{n / 1e6:.3g}e6"
