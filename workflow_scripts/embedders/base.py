"""The contract every embedder keeps, and what the embed stage may ask of it.

The embed stage (workflow_scripts/stages/embed.py) gathers the snippets of every piece of a job
and hands an embedder batches of at most ``batch_size`` clips that share one
``batch_key``; the embedder returns one float32 vector per layer for each clip.

An embedder that can also keep a time summary (workflow_scripts/embedders/time_summary.py,
read by workflow_scripts/pooling) says its layout in ``summary_layout`` and returns summaries
from ``embed_with_summaries``; ``FrameEmbedder`` gives both to an embedder that computes
per-frame features on the host and pools them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from workflow_scripts.embedders.time_summary import TimeSummary, summarise_frames


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

    def summary_layout(self) -> dict[str, Any] | None:
        """``{"layers", "dim", "frame_rate"}`` of the frames its time summary averages, or None
        when it keeps none (then pooling ``native`` is its only pooling)."""
        return None

    def embed_with_summaries(self, clips: list[np.ndarray], summary_hz: float) -> tuple[np.ndarray, list[TimeSummary]]:
        """``embed``'s vectors, and each clip's window means at ``summary_hz`` (one pass)."""
        raise EmbedderError(f"embedder {self.name} keeps no time summary (its summary_layout is None)")

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


class FrameEmbedder(Embedder):
    """An embedder that computes per-frame features on the host and pools them: ``frames``
    and ``pool_frames`` define it, and its vectors and time summaries come from one pass."""

    frame_rate: float  # frames per second
    frame_layers: int
    frame_dim: int

    @abstractmethod
    def frames(self, clip: np.ndarray) -> np.ndarray:
        """(frame_layers, frames, frame_dim) float64 features of one clip."""

    @abstractmethod
    def pool_frames(self, frames: np.ndarray) -> np.ndarray:
        """(layers, dim) float32: the embedder's own vector from one clip's ``frames``."""

    def summary_layout(self) -> dict[str, Any]:
        return {"layers": self.frame_layers, "dim": self.frame_dim, "frame_rate": self.frame_rate}

    def _stacked(self, vectors: list[np.ndarray]) -> np.ndarray:
        """(clips, layers, dim), an empty batch included."""
        if not vectors:
            description = self.describe()
            return np.zeros((0, description["layers"], description["dim"]), np.float32)
        return np.stack(vectors)

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        return self._stacked([self.pool_frames(self.frames(clip)) for clip in clips])

    def embed_with_summaries(self, clips: list[np.ndarray], summary_hz: float) -> tuple[np.ndarray, list[TimeSummary]]:
        frames = [self.frames(clip) for clip in clips]
        summaries = [summarise_frames(each, self.frame_rate, summary_hz) for each in frames]
        return self._stacked([self.pool_frames(each) for each in frames]), summaries
