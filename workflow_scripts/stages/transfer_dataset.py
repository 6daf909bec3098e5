"""The dataset of a transfer (see transfer_split.py): the rows of each variant's dataset
that the transfer's assignment names, keyed ``{variant}/{snippet_id}``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


class TransferDatasetError(ValueError):
    """A transfer's dataset cannot be built; the message names the variant and what to do."""


def transfer_dataset(datasets: dict[str, pa.Table], assignment: pd.DataFrame) -> pa.Table:
    """The rows of each variant's dataset that the transfer assignment names, re-keyed."""
    parts = []
    for variant, rows in assignment.groupby("variant", sort=False):
        table = datasets[variant]
        wanted = set(rows.snippet_id.str.slice(len(variant) + 1))
        snippet_ids = np.array(table.column("snippet_id").to_pylist(), dtype=object)
        mask = np.isin(snippet_ids, list(wanted))
        missing = len(wanted) - int(mask.sum())
        if missing:
            raise TransferDatasetError(
                f"the '{variant}' dataset lacks {missing} snippet(s) of the transfer's assignment; rerun its embed stage"
            )
        chosen = table.filter(pa.array(mask))
        keyed = pa.array(
            [f"{variant}/{snippet}" for snippet in chosen.column("snippet_id").to_pylist()], type=pa.string()
        )
        parts.append(chosen.set_column(chosen.schema.get_field_index("snippet_id"), "snippet_id", keyed))
    return pa.concat_tables(parts)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import read_provenance, write_parquet_atomic
    from workflow_scripts.plumbing.provenance import provenance_record

    spec = snakemake.params.transfer
    datasets, embedder = {}, None
    for variant, path in zip(snakemake.params.variants, snakemake.input.datasets):
        datasets[variant] = pq.read_table(path)
        described = read_provenance(path)["embedder"]
        if embedder is not None and described != embedder:
            raise TransferDatasetError(
                f"the '{variant}' dataset ({path}) was embedded with other settings than the others; rerun it"
            )
        embedder = described
    assignment = pq.read_table(snakemake.input.assignment).to_pandas()
    table = transfer_dataset(datasets, assignment)
    write_parquet_atomic(
        table,
        snakemake.output.dataset,
        provenance_record(
            "dataset",
            {"embedder": snakemake.wildcards.embedder, "transfer": spec},
            embedder=embedder,
            transfer=spec,
            snippets=table.num_rows,
        ),
    )
