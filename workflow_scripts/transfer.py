"""Across rendering variants: train a probe on some renderings, test it on another.

Every variant renders the same scores with the same segmentation, so a snippet (piece,
measures) exists once per variant under the same snippet id. A transfer takes the test
variant's ``by_snippet`` assignment and uses it for every variant: training rows are
the train- and validation-role snippets of each training variant, test rows are the
test-role snippets of the test variant. The test snippets are therefore exactly those of
the within-variant ``by_snippet`` run on the test variant, so the two top-1 figures
compare the same music, heard in a seen or an unseen rendering; and no test snippet's
measures are heard in training in any rendering (the assignment already keeps them apart).

Training on several variants and testing on one left out is the augmentation setting.
In the transfer's tables a snippet id is ``{variant}/{snippet_id}``, unique across variants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from workflow_scripts.roles import TRAINING_ROLES


class TransferError(ValueError):
    """A transfer cannot be built; the message names the variant and what to do."""


def transfer_assignment(
    assignment: pd.DataFrame, snippets_by_variant: dict[str, pd.DataFrame], train: list[str], test: str
) -> pd.DataFrame:
    """The transfer's assignment (``variant/snippet_id``, piece, role, variant)."""
    reference = set(snippets_by_variant[test].snippet_id)
    for variant in train:
        differing = set(snippets_by_variant[variant].snippet_id) ^ reference
        if differing:
            example = sorted(differing)[0]
            raise TransferError(
                f"variant '{variant}' does not have the same snippets as '{test}' ({len(differing)} differ, e.g. {example}): "
                "a transfer needs one segmentation for all variants; check that the same pieces rendered without exclusions"
            )
    parts = [_rows(assignment, variant, TRAINING_ROLES) for variant in train]
    parts.append(_rows(assignment, test, ("test",)))
    return pd.concat(parts, ignore_index=True)


def _rows(assignment: pd.DataFrame, variant: str, roles: tuple[str, ...]) -> pd.DataFrame:
    chosen = assignment[assignment.role.isin(roles)]
    return pd.DataFrame(
        {
            "snippet_id": variant + "/" + chosen.snippet_id,
            "piece_id": chosen.piece_id.values,
            "role": chosen.role.values,
            "variant": variant,
        }
    )


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
            raise TransferError(
                f"the '{variant}' dataset lacks {missing} snippet(s) of the transfer's assignment; rerun its embed stage"
            )
        chosen = table.filter(pa.array(mask))
        keyed = pa.array(
            [f"{variant}/{snippet}" for snippet in chosen.column("snippet_id").to_pylist()], type=pa.string()
        )
        parts.append(chosen.set_column(chosen.schema.get_field_index("snippet_id"), "snippet_id", keyed))
    return pa.concat_tables(parts)


def main_split(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow.parquet as pq

    from workflow_scripts.io_utils import read_provenance, write_parquet_atomic
    from workflow_scripts.provenance import provenance_record
    from workflow_scripts.split import summarise

    spec = snakemake.params.transfer
    assignment = pq.read_table(snakemake.input.assignment).to_pandas()
    snippets = {
        variant: pq.read_table(path).to_pandas()
        for variant, path in zip(snakemake.params.variants, snakemake.input.snippets)
    }
    result = transfer_assignment(assignment, snippets, spec["train"], spec["test"])
    source = read_provenance(snakemake.input.assignment)["settings"]
    write_parquet_atomic(
        pa.Table.from_pandas(result, preserve_index=False),
        snakemake.output.assignment,
        provenance_record("split", {**source, "transfer": spec}, summary=summarise(result)),
    )


def main_dataset(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow.parquet as pq

    from workflow_scripts.io_utils import read_provenance, write_parquet_atomic
    from workflow_scripts.provenance import provenance_record

    spec = snakemake.params.transfer
    datasets, embedder = {}, None
    for variant, path in zip(snakemake.params.variants, snakemake.input.datasets):
        datasets[variant] = pq.read_table(path)
        described = read_provenance(path)["embedder"]
        if embedder is not None and described != embedder:
            raise TransferError(
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
