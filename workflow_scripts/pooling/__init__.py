"""Pooling: how a snippet's embedding frames become the one vector a probe or retrieval reads.

The embed stage stores two things per snippet (workflow_scripts/stages/embed.py):

- ``embedding``: the embedder's own vector, pooled as the embedder defines it (MERT's frame
  mean, the posteriorgrams' per-key mean and standard deviation, spectral's statistics).
  Pooling ``native`` reads it, so every figure made before poolings existed stands.
- ``summary``: a compact time summary of the frames the embedder pools: per layer, the mean
  frame over successive windows of ``1 / embed.summary_hz`` seconds (float16), and how many
  frames each window holds (``summary_frames``; the last window of a snippet is partial).
  Every other pooling is computed from it, without running the model again.

A pooling is a module of this package that defines ``POOLING = Pooling(...)``: a name, a
description, and ``pool(means, frames) -> (layers, dim')`` from one snippet's summary,
``means`` (layers, windows, dim) and ``frames`` (windows,). ``width(dim)`` says dim'. The
registry finds the modules; nothing else lists them. docs/extending.md, "A pooling", is the
recipe. Probes (``pooling`` in every probe kind's settings) and retrieval choose one.

The same summaries are meant to serve whole-piece reference sequences (issue 22): a piece's
windows are a time series at ``summary_hz``, from which sliding reference windows pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from workflow_scripts.plumbing.plugins import declared_in, package_modules

NATIVE = "native"


@dataclass(frozen=True)
class Pooling:
    name: str
    description: str
    pool: Callable[[np.ndarray, np.ndarray], np.ndarray]
    width: Callable[[int], int]


class PoolingError(ValueError):
    """A pooling cannot be computed from a dataset; the message names the file and the fix."""


def pooling_modules() -> list[str]:
    return package_modules(__name__, __path__)


def pooling_code_modules() -> frozenset[str]:
    """The pooling modules and what they import: code behind every probe and retrieval result
    that the import walk from a stage cannot see, because poolings are found at run time."""
    from workflow_scripts.plumbing.code_graph import workflow_closure

    return frozenset().union(*(workflow_closure(module) for module in pooling_modules()))


@cache
def poolings() -> dict[str, Pooling]:
    """Name -> pooling, for every module of this package (numpy only: cheap at DAG build)."""
    return declared_in(pooling_modules(), "POOLING")


def pooling_names() -> list[str]:
    return [NATIVE, *sorted(poolings())]


def check_pooling(name: str, where: str) -> None:
    if name != NATIVE and name not in poolings():
        raise ValueError(f"{where} pooling '{name}' is not one of {pooling_names()}")


def weighted_mean(means: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(layers, windows, dim) window means and (windows,) frame counts -> (layers, dim) frame mean."""
    weights = frames.astype(np.float64)
    return np.einsum("lwd,w->ld", means.astype(np.float64), weights) / max(weights.sum(), 1.0)


def summaries_of(table, embedder: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each row's (means (layers, windows, dim) float32, frames (windows,)) from a dataset table."""
    layout = embedder["summary"]
    layers, dim = layout["layers"], layout["dim"]
    frames = table.column("summary_frames").to_pylist()
    values = table.column("summary").combine_chunks()
    offsets = values.offsets.to_numpy()
    flat = values.values.to_numpy(zero_copy_only=False)
    out = []
    for row, counts in enumerate(frames):
        counts = np.asarray(counts, np.int64)
        means = flat[offsets[row] : offsets[row + 1]].astype(np.float32).reshape(layers, len(counts), dim)
        out.append((means, counts))
    return out


def read_dataset(path, pooling: str):
    """A dataset's table with the columns ``pooling`` reads: native leaves the summaries on disk
    (MERT's are most of the file)."""
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.embeddings_table import NATIVE_COLUMNS

    return pq.read_table(path, columns=list(NATIVE_COLUMNS) if pooling == NATIVE else None)


def pooled_embeddings(table, embedder: dict[str, Any], pooling: str, where: str = "the dataset") -> np.ndarray:
    """(rows, layers, dim') float32: the dataset's vectors under ``pooling``."""
    from workflow_scripts.plumbing.embeddings_table import table_to_embeddings

    if pooling == NATIVE:
        return table_to_embeddings(table, embedder["layers"], embedder["dim"])
    check_pooling(pooling, "the")
    if "summary" not in embedder or "summary" not in table.column_names:
        raise PoolingError(
            f"{where} holds no time summaries (embedder {embedder.get('name')!r} keeps none, or its shards were "
            f"written before summaries existed), so pooling '{pooling}' cannot be computed: rerun embed for it, "
            "or use pooling native"
        )
    method = poolings()[pooling]
    layers, dim = embedder["summary"]["layers"], embedder["summary"]["dim"]
    rows = summaries_of(table, embedder)
    if not rows:
        return np.zeros((0, layers, method.width(dim)), np.float32)
    return np.stack([method.pool(means, frames) for means, frames in rows]).astype(np.float32)
