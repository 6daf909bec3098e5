"""Which layers of an embedding a probe reads (the ``layer`` setting of probes and retrieval)."""

from __future__ import annotations

import numpy as np


def select_layer(vectors: np.ndarray, layer: str | int) -> np.ndarray:
    """(n, layers, dim) -> (n, 1, dim), or all layers for ``weighted``."""
    if layer == "weighted":
        return vectors
    if layer == "mean":
        return vectors.mean(axis=1, keepdims=True)
    if layer == "last":
        return vectors[:, -1:, :]
    index = int(layer)
    if not -vectors.shape[1] <= index < vectors.shape[1]:
        raise ValueError(
            f"probe layer {index} does not exist: the embedder has {vectors.shape[1]} layers (0..{vectors.shape[1] - 1})"
        )
    return vectors[:, index : index + 1, :]
