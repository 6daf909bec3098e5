"""Embedders: snippets of 24 kHz mono audio to one vector per layer.

Every embedder returns an array of shape (snippets, layers, dim). spectral has one layer;
basic_pitch and pianoroll three (note, onset, contour); MERT-v1-95M 13 (the feature
projection and 12 transformer layers), MERT-v1-330M 25.
"""

from __future__ import annotations

from typing import Any

from workflow_scripts.embedders.base import Embedder, EmbedderError
from workflow_scripts.embedders.registry import EMBEDDERS, HF_ENCODERS, needs_gpu

__all__ = ["EMBEDDERS", "Embedder", "EmbedderError", "build_embedder", "needs_gpu"]


def build_embedder(name: str, settings: dict[str, Any], logger=None) -> Embedder:
    if name == "spectral":
        from workflow_scripts.embedders.spectral import SpectralEmbedder

        return SpectralEmbedder(settings)
    if name == "basic_pitch":
        from workflow_scripts.embedders.basic_pitch import BasicPitchEmbedder

        return BasicPitchEmbedder(settings)
    if name == "pianoroll":
        from workflow_scripts.embedders.pianoroll import PianorollEmbedder

        return PianorollEmbedder(settings)
    if name in HF_ENCODERS:
        from workflow_scripts.embedders.mert import AudioEncoderEmbedder

        return AudioEncoderEmbedder(name, settings, logger=logger)
    raise EmbedderError(f"unknown embedder '{name}'; choose one of {sorted(EMBEDDERS)}")
