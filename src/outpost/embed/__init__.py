"""Embedders: text → normalised float32 vectors, plus the int8 format they are stored in."""

from outpost.embed.base import Embedder
from outpost.embed.factory import load_embedder
from outpost.embed.quantize import dequantize, quantize

__all__ = ["Embedder", "dequantize", "load_embedder", "quantize"]
