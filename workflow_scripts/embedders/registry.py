"""What the workflow must know about each embedder before importing any of them."""

from __future__ import annotations

# name -> whether its jobs ask for a GPU (resources: gpu=1) and whether it has weights to fetch
EMBEDDERS = {
    "spectral": {"gpu": False, "weights": False},
    # Basic Pitch's model file ships inside its wheel (requirements/no-deps.txt): nothing to fetch.
    "basic_pitch": {"gpu": False, "weights": False},
    # The notes the render stage played: no audio, no weights.
    "pianoroll": {"gpu": False, "weights": False},
    # The transformers audio encoders (embedders/mert.py), one config entry each.
    "mert": {"gpu": True, "weights": True},
    "mert_330m": {"gpu": True, "weights": True},
    "mert_v0": {"gpu": True, "weights": True},
    "music2vec": {"gpu": True, "weights": True},
    "hubert_base": {"gpu": True, "weights": True},
}
HF_ENCODERS = ("mert", "mert_330m", "mert_v0", "music2vec", "hubert_base")
# Settings that change how fast vectors are computed, not what they are: left out of
# the piece cache's key so changing them reuses finished pieces.
RUNTIME_ONLY_SETTINGS = ("batch_size", "device", "cache_dir")


def needs_gpu(name: str) -> bool:
    return EMBEDDERS[name]["gpu"]


def needs_weights(name: str) -> bool:
    return EMBEDDERS[name]["weights"]
