"""Embedders: snippets of 24 kHz mono audio to one vector per layer.

Every embedder returns an array of shape (snippets, layers, dim). Single-representation
embedders have one layer; MERT has 13 (the feature projection and 12 transformer layers).
"""

from __future__ import annotations

from typing import Any

from workflow_scripts.embedders.base import Embedder, EmbedderError
from workflow_scripts.embedders.registry import EMBEDDERS, needs_gpu

__all__ = ["EMBEDDERS", "Embedder", "EmbedderError", "build_embedder", "needs_gpu"]


def build_embedder(name: str, settings: dict[str, Any], logger=None) -> Embedder:
    if name == "spectral":
        from workflow_scripts.embedders.spectral import SpectralEmbedder

        return SpectralEmbedder(settings)
    if name == "mert":
        from workflow_scripts.embedders.mert import MertEmbedder

        return MertEmbedder(settings, logger=logger)
    raise EmbedderError(f"unknown embedder '{name}'; choose one of {sorted(EMBEDDERS)}")
