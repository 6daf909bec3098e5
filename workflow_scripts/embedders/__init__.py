"""Embedders: snippets of 24 kHz mono audio to one vector per layer.

Every embedder returns an array of shape (snippets, layers, dim). spectral has one layer;
basic_pitch and pianoroll three (note, onset, contour); MERT-v1-95M 13 (the feature
projection and 12 transformer layers), MERT-v1-330M 25. Each implementation module declares
its names, settings and needs (``declaration.py``); the registry reads them.
"""

from __future__ import annotations

from typing import Any

from workflow_scripts.embedders.base import Embedder, EmbedderError
from workflow_scripts.embedders.declaration import DeclarationError, EmbedderDeclaration
from workflow_scripts.embedders.registry import declaration, declarations, needs_gpu

__all__ = [
    "DeclarationError",
    "Embedder",
    "EmbedderDeclaration",
    "EmbedderError",
    "build_embedder",
    "declarations",
    "needs_gpu",
]


def build_embedder(name: str, settings: dict[str, Any], logger=None) -> Embedder:
    try:
        declared = declaration(name)
    except DeclarationError as error:
        raise EmbedderError(str(error)) from None
    return declared.build(settings, logger)
