from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class EmbedderError(RuntimeError):
    """An embedder cannot be built or run; the message says what is missing and how to fix it."""


class Embedder(ABC):
    name: str
    sample_rate: int

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Everything that determines the vectors: id, revision, layers, dim, settings."""

    @abstractmethod
    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        """Float32 array (len(clips), layers, dim) for mono clips at ``sample_rate``."""
