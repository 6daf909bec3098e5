"""Across-variant transfers: configuration checks, the assignment and the dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from workflow_scripts.plumbing.settings import configured_transfers
from workflow_scripts.stages.transfer_dataset import transfer_dataset
from workflow_scripts.stages.transfer_split import TransferError, transfer_assignment


def config(transfers, variants=("piano", "organ", "strings"), splits=("by_snippet", "by_piece")):
    return {
        "variants": {name: {} for name in variants},
        "variant_transfers": transfers,
        "splits": {"names": list(splits)},
    }


def test_transfers_are_named_by_their_variants():
    transfers = configured_transfers(
        config([{"train": ["piano"], "test": "organ"}, {"train": ["piano", "strings"], "test": "organ"}])
    )
    assert transfers == {
        "piano_to_organ": {"train": ["piano"], "test": "organ"},
        "piano+strings_to_organ": {"train": ["piano", "strings"], "test": "organ"},
    }


@pytest.mark.parametrize(
    ("transfers", "splits", "message"),
    [
        ([{"train": ["piano"], "test": "harp"}], ("by_snippet",), "harp"),
        ([{"train": ["piano", "organ"], "test": "organ"}], ("by_snippet",), "also a training variant"),
        ([{"train": ["piano", "piano"], "test": "organ"}], ("by_snippet",), "twice"),
        ([{"train": ["piano"], "test": "organ"}], ("by_piece",), "by_snippet"),
    ],
)
def test_bad_transfers_are_refused_naming_the_problem(transfers, splits, message):
    with pytest.raises(ValueError, match=message):
        configured_transfers(config(transfers, splits=splits))


def assignment_and_snippets():
    assignment = pd.DataFrame(
        {
            "snippet_id": ["a:0", "a:1", "a:2", "b:0", "b:1", "b:2"],
            "piece_id": ["a", "a", "a", "b", "b", "b"],
            "role": ["train", "validation", "test", "train", "dropped_overlap", "test"],
        }
    )
    snippets = pd.DataFrame({"snippet_id": assignment.snippet_id})
    return assignment, {"piano": snippets, "strings": snippets.copy(), "organ": snippets.copy()}


def test_training_rows_come_from_training_variants_and_test_rows_from_the_test_variant():
    assignment, snippets = assignment_and_snippets()
    result = transfer_assignment(assignment, snippets, ["piano", "strings"], "organ")
    assert set(result[result.variant == "organ"].role) == {"test"}
    assert set(result[result.variant != "organ"].role) == {"train", "validation"}
    # The test snippets are those of the within-variant run; dropped ones stay dropped.
    assert sorted(result[result.role == "test"].snippet_id) == ["organ/a:2", "organ/b:2"]
    assert "piano/b:1" not in set(result.snippet_id) and result.snippet_id.is_unique
    assert len(result[result.variant == "piano"]) == 3 and len(result[result.variant == "strings"]) == 3


def test_a_variant_with_other_snippets_is_refused_naming_it():
    assignment, snippets = assignment_and_snippets()
    snippets["strings"] = snippets["strings"].iloc[:-1]
    with pytest.raises(TransferError, match="strings"):
        transfer_assignment(assignment, snippets, ["piano", "strings"], "organ")


def test_the_transfer_dataset_takes_each_row_from_its_variant():
    assignment, snippets = assignment_and_snippets()
    result = transfer_assignment(assignment, snippets, ["piano"], "organ")
    datasets = {
        variant: pa.table(
            {
                "snippet_id": list(assignment.snippet_id),
                "piece_id": list(assignment.piece_id),
                "value": np.full(6, index, dtype=np.float32),
            }
        )
        for index, variant in enumerate(["piano", "organ"])
    }
    table = transfer_dataset(datasets, result)
    rows = table.to_pandas().set_index("snippet_id")
    assert sorted(rows.index) == sorted(result.snippet_id)
    assert (rows.loc[["organ/a:2", "organ/b:2"], "value"] == 1).all()
    assert (rows.loc[[s for s in rows.index if s.startswith("piano/")], "value"] == 0).all()
