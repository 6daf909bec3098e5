"""Summarised recordings for identification: whole pieces and queries from their embed shards,
and the sliding windows the cosine matcher compares.

A reference window is pooled from the time summary of one pass over the whole piece (window
means at ``identification.frame_hz`` with their frame counts), not embedded as a clip of its
own: its vector is the exact frame mean of the windows it spans (up to float16), at a cost
linear in the corpus's duration. What that approximation costs against embedding each window
as a clip (an encoder's receptive field sees past the window's edges) is measured by
benchmarks/identification_speed.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from workflow_scripts.plumbing.io_utils import read_provenance
from workflow_scripts.pooling import summaries_of


class IdentificationError(ValueError):
    """Shards the matchers cannot read; the message names the file and what to rerun."""


@dataclass
class Summarised:
    """Recordings (whole pieces or queries) as time summaries at ``hz``."""

    ids: list[str]
    pieces: list[str]
    means: list[np.ndarray]  # each (layers, windows, dim) float32
    frames: list[np.ndarray]  # each (windows,) frame counts
    hz: float
    embedder: dict


def read_summarised(shards: list[str | Path]) -> Summarised:
    """Every row of ``shards`` with its time summary; refuses shards without one, or of mixed rates."""
    ids, pieces, means, frames, hz, embedder = [], [], [], [], None, None
    for shard in shards:
        table = pq.read_table(shard)
        if table.num_rows == 0:
            continue  # an excluded piece
        description = read_provenance(shard, table.schema).get("embedder", {})
        if "summary" not in description or "summary" not in table.column_names:
            raise IdentificationError(
                f"{shard}: the shard holds no time summary (its embedder keeps none, or it predates them); "
                "identification needs one: rerun its embed job"
            )
        rate = float(description["summary"]["hz"])
        if hz is not None and rate != hz:
            raise IdentificationError(f"{shard}: time summary at {rate} Hz beside others at {hz} Hz; rerun embed")
        hz, embedder = rate, description
        for (mean, count), row_id, piece in zip(
            summaries_of(table, description),
            table.column("snippet_id").to_pylist(),
            table.column("piece_id").to_pylist(),
        ):
            ids.append(row_id)
            pieces.append(piece)
            means.append(mean)
            frames.append(count)
    return Summarised(ids, pieces, means, frames, hz or 0.0, embedder or {})


def layer_of(means: np.ndarray, layer: str | int) -> np.ndarray:
    """(layers, windows, dim) -> (windows, dim) for the ``layer`` setting (an index, "mean", "last")."""
    if layer == "mean":
        return means.mean(axis=0)
    if layer == "last":
        return means[-1]
    index = int(layer)
    if not -means.shape[0] <= index < means.shape[0]:
        raise IdentificationError(f"identification.layer {index}: the embedder has {means.shape[0]} layers")
    return means[index]


def frame_mean(means: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(windows, dim) window means -> (dim,) mean frame."""
    weights = frames.astype(np.float64)
    return (weights @ means.astype(np.float64)) / max(weights.sum(), 1.0)


def sliding_windows(means: np.ndarray, frames: np.ndarray, span: int) -> np.ndarray:
    """Frame means of every run of ``span`` successive summary windows, one window apart:
    (max(1, windows - span + 1), dim). A piece shorter than ``span`` gives its one mean."""
    weights = frames.astype(np.float64)
    sums = np.vstack([np.zeros((1, means.shape[1])), np.cumsum(means.astype(np.float64) * weights[:, None], axis=0)])
    counts = np.r_[0.0, np.cumsum(weights)]
    span = max(1, min(span, len(frames)))
    totals = sums[span:] - sums[:-span]
    return totals / np.maximum(counts[span:] - counts[:-span], 1.0)[:, None]
