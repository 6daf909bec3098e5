"""Dataset gather: validate every embedding shard of one embedder and variant, join them.

The gather refuses, naming the piece and the file: shards without this workflow's
provenance, shards from a different embedder, model revision, layer count or settings
than the others, and vectors holding NaN or Inf. Excluded pieces (empty shards) are
carried in the provenance with their reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.plumbing.embeddings_table import embedding_schema, table_to_embeddings
from workflow_scripts.plumbing.io_utils import read_provenance, write_parquet_atomic
from workflow_scripts.plumbing.provenance import provenance_record

# Provenance fields that must agree across every shard of one dataset.
# ``summary`` (the time summary's layout and rate) among them: a shard written before summaries
# existed, or at another summary_hz, is refused beside new ones rather than mixed.
CONSISTENT_FIELDS = (
    "name",
    "model_id",
    "revision",
    "model_files",
    "layers",
    "dim",
    "sample_rate",
    "settings",
    "summary",
)


class DatasetError(ValueError):
    """A shard cannot join the dataset; the message names the piece and the file."""


def check_shard(
    path: Path, table: pa.Table, embedder: dict[str, Any], reference: dict[str, Any] | None, expected_name: str
) -> None:
    piece = path.stem
    if embedder.get("name") != expected_name:
        raise DatasetError(
            f"piece '{piece}' ({path}): shard was made by embedder '{embedder.get('name')}', "
            f"expected '{expected_name}'. Delete the file and rerun."
        )
    if reference is not None:
        for field in CONSISTENT_FIELDS:
            if embedder.get(field) != reference.get(field):
                raise DatasetError(
                    f"piece '{piece}' ({path}): embedder {field} is {embedder.get(field)!r} but other shards have "
                    f"{reference.get(field)!r}; shards from different settings or code versions cannot be mixed. "
                    "Delete the stale shards (or the piece cache) and rerun embed."
                )
    if table.num_rows:
        vectors = table_to_embeddings(table, embedder["layers"], embedder["dim"])
        bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=(1, 2)))
        if bad_rows.size:
            snippet_ids = table.column("snippet_id").to_pylist()
            raise DatasetError(
                f"piece '{piece}' ({path}): {bad_rows.size} snippet(s) have NaN or Inf embeddings, "
                f"e.g. {snippet_ids[bad_rows[0]]}. Check the piece's audio and the embedder's precision setting."
            )


def gather_shards(shard_paths: list[str | Path], embedder_name: str) -> tuple[pa.Table, dict[str, Any]]:
    tables, reference, excluded = [], None, {}
    for path in map(Path, shard_paths):
        provenance = read_provenance(path)
        table = pq.read_table(path)
        embedder = provenance.get("embedder", {})
        check_shard(path, table, embedder, reference, embedder_name)
        reference = reference or embedder
        if provenance.get("status") != "ok":
            excluded[provenance["piece_id"]] = provenance.get("reason", "")
            continue
        tables.append(table.cast(embedding_schema(embedder["layers"], embedder["dim"], "summary" in embedder)))
    if reference is None:
        raise DatasetError(f"no embedding shards for embedder '{embedder_name}'")
    dataset = (
        pa.concat_tables(tables)
        if tables
        else embedding_schema(reference["layers"], reference["dim"], "summary" in reference).empty_table()
    )
    summary = {"embedder": reference, "pieces": len(tables), "snippets": dataset.num_rows, "excluded": excluded}
    return dataset, summary


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    from workflow_scripts.plumbing.batch_index import read_batch_indexes

    shards = read_batch_indexes(list(snakemake.input.embeddings), "shard")
    dataset, summary = gather_shards(shards, snakemake.wildcards.embedder)
    write_parquet_atomic(
        dataset,
        snakemake.output.dataset,
        provenance_record(
            "dataset", {"embedder": snakemake.wildcards.embedder, "variant": snakemake.wildcards.variant}, **summary
        ),
    )
