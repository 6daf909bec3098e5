"""What the workflow must know about each embedder before importing any of them."""

from __future__ import annotations

# name -> whether its jobs ask for a GPU (``resources: gpu=1``)
EMBEDDERS = {"spectral": False, "mert": True}


def needs_gpu(name: str) -> bool:
    return EMBEDDERS[name]
