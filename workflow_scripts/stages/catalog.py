"""Catalog gather: every rendered piece's facts and every snippet, in two tables.

``catalog.tsv`` has one row per piece (title, key, measures, parts, duration, snippets,
status and the reason a piece was excluded, how many unpitched notes were skipped, the
source file and, for a tune of a tune book, its place in the file); ``snippets.parquet`` has every snippet of
the included pieces, and is what the splits are drawn from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.plumbing.io_utils import read_provenance, write_parquet_atomic, write_tsv_atomic
from workflow_scripts.plumbing.provenance import provenance_record
from workflow_scripts.plumbing.snippet_audio import SNIPPET_SCHEMA

CATALOG_COLUMNS = [
    "piece_id",
    "status",
    "reason",
    "title",
    "key",
    "parts",
    "measures",
    "duration_s",
    "snippets",
    # Notes and chords without a pitch (unpitched percussion, empty chords) that the render skipped.
    "unpitched_skipped",
    "source",
    "tune_index",
    "source_sha256",
]
# Counts stay integers with an excluded piece (no facts) among them: empty cells, not "5.0".
INTEGER_COLUMNS = ("parts", "measures", "snippets", "unpitched_skipped", "tune_index")


def build_catalog(manifest_paths: list[str | Path]) -> tuple[pd.DataFrame, pa.Table, dict]:
    rows, tables, render_settings = [], [], None
    for path in manifest_paths:
        provenance = read_provenance(path)
        rows.append(
            {
                "piece_id": provenance["piece_id"],
                "status": provenance["status"],
                "reason": provenance["reason"],
                "source": provenance["source"],
                "tune_index": provenance.get("tune_index"),
                "source_sha256": provenance["source_sha256"],
                **{key: value for key, value in provenance["piece"].items() if key != "voice_pitches"},
            }
        )
        # The snippet columns only: the notes stay in the per-piece manifests.
        tables.append(pq.read_table(path, columns=SNIPPET_SCHEMA.names).cast(SNIPPET_SCHEMA))
        render_settings = render_settings or {k: provenance[k] for k in ("settings", "soundfont")}
    catalog = pd.DataFrame(rows).reindex(columns=CATALOG_COLUMNS)
    catalog = catalog.astype({column: "Int64" for column in INTEGER_COLUMNS})
    snippets = pa.concat_tables(tables) if tables else SNIPPET_SCHEMA.empty_table()
    return catalog, snippets, render_settings or {}


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    from workflow_scripts.plumbing.batch_index import read_batch_indexes

    catalog, snippets, render = build_catalog(read_batch_indexes(list(snakemake.input.renders), "manifest"))
    write_tsv_atomic(catalog, snakemake.output.catalog)
    write_parquet_atomic(
        snippets,
        snakemake.output.snippets,
        provenance_record(
            "catalog",
            {"variant": snakemake.wildcards.variant},
            render=render,
            pieces=len(catalog),
            excluded=int((catalog.status != "ok").sum()),
        ),
    )
