"""The Parquet layout of embedding shards and datasets.

One row per snippet; ``embedding`` is a fixed-size list of ``layers * dim`` float32
values (layer-major), with ``layers`` and ``dim`` in the provenance metadata.

An embedder that keeps a time summary (provenance ``embedder.summary``: its layers, dim and
rate) adds two columns: ``summary``, the float16 window means of the snippet, layer-major
(layers, windows, dim), and ``summary_frames``, each window's frame count (windows,).
Shards without them were written by an embedder that keeps none, or before summaries
existed; workflow_scripts/pooling refuses poolings other than native on them by name.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

NATIVE_COLUMNS = ("snippet_id", "piece_id", "snippet_index", "embedding")


def embedding_schema(layers: int, dim: int, summarised: bool = False) -> pa.Schema:
    fields = [
        ("snippet_id", pa.string()),
        ("piece_id", pa.string()),
        ("snippet_index", pa.int32()),
        ("embedding", pa.list_(pa.float32(), layers * dim)),
    ]
    if summarised:
        fields += [("summary", pa.list_(pa.float16())), ("summary_frames", pa.list_(pa.int32()))]
    return pa.schema(fields)


def embeddings_to_table(
    snippet_ids: list[str],
    piece_ids: list[str],
    snippet_indices: list[int],
    vectors: np.ndarray,
    summaries: list | None = None,
) -> pa.Table:
    """``vectors`` has shape (snippets, layers, dim); ``summaries``, when given, one
    ``TimeSummary`` per snippet (workflow_scripts/embedders/time_summary.py)."""
    count, layers, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    columns = [
        pa.array(snippet_ids, pa.string()),
        pa.array(piece_ids, pa.string()),
        pa.array(snippet_indices, pa.int32()),
        pa.FixedSizeListArray.from_arrays(flat, layers * dim),
    ]
    if summaries is not None:
        if len(summaries) != count:
            raise ValueError(f"{count} snippets but {len(summaries)} time summaries")
        columns += [
            _list_array([s.means.reshape(-1) for s in summaries], pa.float16(), np.float16),
            _list_array([s.frames for s in summaries], pa.int32(), np.int32),
        ]
    return pa.Table.from_arrays(columns, schema=embedding_schema(layers, dim, summaries is not None))


def _list_array(parts: list[np.ndarray], value_type: pa.DataType, dtype) -> pa.Array:
    offsets = np.zeros(len(parts) + 1, np.int32)
    offsets[1:] = np.cumsum([len(part) for part in parts])
    values = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, value_type))


def table_to_embeddings(table: pa.Table, layers: int, dim: int) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(table.num_rows, layers, dim)
