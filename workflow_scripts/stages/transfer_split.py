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

import pandas as pd
import pyarrow as pa

from workflow_scripts.plumbing.roles import TRAINING_ROLES


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
    rows = pd.DataFrame(
        {
            "snippet_id": variant + "/" + chosen.snippet_id,
            "piece_id": chosen.piece_id.values,
            "role": chosen.role.values,
            "variant": variant,
        }
    )
    # The measure windows travel along, so selection folds hold a window out in every rendering at once.
    for column in ("first_measure", "stop_measure"):
        if column in chosen:
            rows[column] = chosen[column].values
    return rows


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import read_provenance, write_parquet_atomic
    from workflow_scripts.plumbing.provenance import provenance_record
    from workflow_scripts.stages.split import summarise

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
