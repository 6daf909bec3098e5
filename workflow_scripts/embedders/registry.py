"""What the workflow must know about each embedder before importing any of them."""

from __future__ import annotations

import functools

from workflow_scripts.plumbing.code_graph import sources_digest, workflow_closure

# name -> whether its jobs ask for a GPU (resources: gpu=1), whether it has weights to fetch,
# and its module in this package
EMBEDDERS = {
    "spectral": {"gpu": False, "weights": False, "module": "spectral"},
    # Basic Pitch's model file ships inside its wheel (requirements/no-deps.txt): nothing to fetch.
    "basic_pitch": {"gpu": False, "weights": False, "module": "basic_pitch"},
    # The notes the render stage played: no audio, no weights.
    "pianoroll": {"gpu": False, "weights": False, "module": "pianoroll"},
    # The transformers audio encoders (embedders/mert.py), one config entry each.
    "mert": {"gpu": True, "weights": True, "module": "mert"},
    "mert_330m": {"gpu": True, "weights": True, "module": "mert"},
    "mert_v0": {"gpu": True, "weights": True, "module": "mert"},
    "music2vec": {"gpu": True, "weights": True, "module": "mert"},
    "hubert_base": {"gpu": True, "weights": True, "module": "mert"},
}
HF_ENCODERS = ("mert", "mert_330m", "mert_v0", "music2vec", "hubert_base")
# Settings that change how fast vectors are computed, not what they are: left out of
# the piece cache's key so changing them reuses finished pieces.
RUNTIME_ONLY_SETTINGS = ("batch_size", "device", "cache_dir")


def needs_gpu(name: str) -> bool:
    return EMBEDDERS[name]["gpu"]


def needs_weights(name: str) -> bool:
    return EMBEDDERS[name]["weights"]


def implementation(name: str) -> str:
    return f"workflow_scripts.embedders.{EMBEDDERS[name]['module']}"


IMPLEMENTATIONS = frozenset(implementation(name) for name in EMBEDDERS)


def stage_modules(stage: str, embedder: str | None = None) -> frozenset[str]:
    """The code behind a stage's results: its module and what it imports, but of the
    embedders' implementations only ``embedder``'s. The embedders package reaches every
    implementation (build_embedder imports them lazily), so without this an edit to mert.py
    would rerun the spectral embed jobs, fetch_model and everything after them."""
    own = [implementation(embedder)] if embedder else []
    leave_out = IMPLEMENTATIONS - set(own)
    return frozenset().union(
        *(workflow_closure(module, leave_out) for module in [f"workflow_scripts.stages.{stage}", *own])
    )


@functools.cache
def stage_code_digest(stage: str, embedder: str | None = None) -> str:
    """Digest of :func:`stage_modules`: in each rule's params and in the embed cache keys."""
    return sources_digest(stage_modules(stage, embedder))
