"""Queries stage: one rendering's query excerpts for a batch of pieces (workflow_scripts/identification/queries.py).

Per piece it writes a query manifest in the render stage's format, so the embed stage embeds
the queries as it embeds snippets: their samples are spans of the piece's whole-piece
recording, their notes those sounding in the span. Its provenance records each query's start
and end in seconds and in measures of the score.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from workflow_scripts.identification.queries import QuerySettings, cut_queries, measure_position
from workflow_scripts.plumbing.batch_index import write_batch_index
from workflow_scripts.plumbing.io_utils import read_provenance, sha256_file, write_parquet_atomic
from workflow_scripts.plumbing.job_log import job_logger
from workflow_scripts.plumbing.provenance import provenance_record


def piece_queries(whole_manifest: Path, settings: QuerySettings, rendering: str):
    """The query manifest of one piece and its provenance."""
    table = pq.read_table(whole_manifest)
    render = read_provenance(whole_manifest, table.schema)
    measure_starts = render.get("piece", {}).get("measure_starts_s")
    if table.num_rows and not measure_starts:
        raise ValueError(
            f"{whole_manifest}: its provenance has no measure_starts_s (rendered before the render stage "
            "recorded them); delete it and rerun the render stage"
        )
    queries = cut_queries(table, measure_starts or [0.0], settings)
    starts = queries.column("start_s").to_numpy()
    ends = queries.column("end_s").to_numpy()
    provenance = provenance_record(
        "queries",
        # The recording's render settings with the queries': what the embed stage records of "its render".
        {"render": render["settings"], "queries": settings.as_dict()},
        rendering=rendering,
        whole_manifest=str(whole_manifest),
        whole_manifest_sha256=sha256_file(whole_manifest),
        status=render["status"],
        reason=render["reason"],
        soundfont=render["soundfont"],
        source_sha256=render["source_sha256"],
        queries=[
            {
                "query_id": query,
                "seconds": round(float(end - start), 6),
                "start_measure": round(float(first), 4),
                "end_measure": round(float(last), 4),
            }
            for query, start, end, first, last in zip(
                queries.column("snippet_id").to_pylist(),
                starts,
                ends,
                measure_position(starts, measure_starts or [0.0]),
                measure_position(ends, measure_starts or [0.0]),
            )
        ],
    )
    return queries, provenance


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    logger = job_logger("queries", snakemake.log[0])
    settings = QuerySettings.from_params(snakemake.params.settings)
    pieces = []
    for piece_id, whole, audio, destination in zip(
        snakemake.params.pieces, snakemake.params.whole_manifests, snakemake.params.audio, snakemake.output.manifests
    ):
        queries, provenance = piece_queries(Path(whole), settings, snakemake.params.rendering)
        write_parquet_atomic(queries, destination, provenance)
        logger.info("%s: %d queries", piece_id, queries.num_rows)
        pieces.append({"piece_id": piece_id, "manifest": destination, "audio": audio})
    write_batch_index(snakemake.output.index, "queries", pieces)
