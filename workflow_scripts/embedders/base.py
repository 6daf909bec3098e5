"""The contract every embedder keeps, and what the embed stage may ask of it.

The embed stage (workflow_scripts/stages/embed.py) gathers the snippets of every piece of a job
and hands an embedder batches of at most ``batch_size`` clips that share one
``batch_key``; the embedder returns one float32 vector per layer for each clip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


class EmbedderError(RuntimeError):
    """An embedder cannot be built or run; the message says what is missing and how to fix it."""


class Embedder(ABC):
    name: str
    sample_rate: int
    # Clips per call to ``embed`` that the stage aims for (a forward pass for a model).
    batch_size: int = 64

    @classmethod
    def from_settings(cls, name: str, settings: dict[str, Any], logger=None) -> Embedder:
        """What the registry calls to build the embedder its declaration names. Most take their
        settings alone; one class serving several names (mert.py) overrides this."""
        return cls(settings)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Everything that determines the vectors: id, revision, layers, dim, settings."""

    @abstractmethod
    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        """Float32 array (len(clips), layers, dim) for mono clips at ``sample_rate``."""

    def read_clips(self, audio_path: Path, manifest: pa.Table) -> list[np.ndarray]:
        """What ``embed`` takes for each snippet of a rendered piece, in manifest order: its
        audio (float32 mono at the render rate). An embedder of the score rather than the
        sound (pianoroll) reads the notes in the manifest instead and never decodes audio."""
        from workflow_scripts.plumbing.snippet_audio import read_snippet_audio

        return read_snippet_audio(audio_path, manifest)

    def batch_key(self, num_samples: int) -> Hashable:
        """Clips whose keys are equal may share one call to ``embed``.

        Embedders whose output for a clip does not depend on its batch mates keep the
        default (any clips together); a model whose normalisation spans the padded batch
        returns the exact length.
        """
        return None

    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` means the batch did not fit in memory (the stage then splits it)."""
        return isinstance(error, MemoryError)

    def release_memory(self) -> None:  # noqa: B027 - an optional hook: nothing to free by default
        """Free what a failed batch left allocated before the stage retries smaller batches."""

    def timing_barrier(self) -> None:  # noqa: B027 - an optional hook: CPU work is already finished
        """Wait for work queued on an accelerator, so the stage's timings are honest."""
