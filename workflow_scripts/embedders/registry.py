"""What the workflow must know about each embedder before importing any of them."""

from __future__ import annotations

# name -> whether its jobs ask for a GPU (resources: gpu=1) and whether it has weights to fetch
EMBEDDERS = {
    "spectral": {"gpu": False, "weights": False},
    "mert": {"gpu": True, "weights": True},
}
# Settings that change how fast vectors are computed, not what they are: left out of
# the piece cache's key so changing them reuses finished pieces.
RUNTIME_ONLY_SETTINGS = ("batch_size", "device", "cache_dir")


def needs_gpu(name: str) -> bool:
    return EMBEDDERS[name]["gpu"]


def needs_weights(name: str) -> bool:
    return EMBEDDERS[name]["weights"]
