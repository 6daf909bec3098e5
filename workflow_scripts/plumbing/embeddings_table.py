"""The Parquet layout of embedding shards and datasets.

One row per snippet; ``embedding`` is a fixed-size list of ``layers * dim`` float32
values (layer-major), with ``layers`` and ``dim`` in the provenance metadata.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def embedding_schema(layers: int, dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("snippet_id", pa.string()),
            ("piece_id", pa.string()),
            ("snippet_index", pa.int32()),
            ("embedding", pa.list_(pa.float32(), layers * dim)),
        ]
    )


def embeddings_to_table(
    snippet_ids: list[str], piece_ids: list[str], snippet_indices: list[int], vectors: np.ndarray
) -> pa.Table:
    """``vectors`` has shape (snippets, layers, dim)."""
    count, layers, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.Table.from_arrays(
        [
            pa.array(snippet_ids, pa.string()),
            pa.array(piece_ids, pa.string()),
            pa.array(snippet_indices, pa.int32()),
            pa.FixedSizeListArray.from_arrays(flat, layers * dim),
        ],
        schema=embedding_schema(layers, dim),
    )


def table_to_embeddings(table: pa.Table, layers: int, dim: int) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(table.num_rows, layers, dim)
