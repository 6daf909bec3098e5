import itertools

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.stages.split import (
    assign_piece_by_snippet,
    by_piece,
    by_snippet,
    is_leaky,
    leaked_test_snippets,
    overlaps,
    summarise,
)


def settings(test_fraction=0.25, seed=0, validation_fraction=0.0):
    return {"test_fraction": test_fraction, "seed": seed, "validation_fraction": validation_fraction}


def snippets_frame(pieces: dict[str, int], window: int, hop: int) -> pd.DataFrame:
    rows = []
    for piece, count in pieces.items():
        for index in range(count):
            rows.append(
                {
                    "snippet_id": f"{piece}:{index:03d}",
                    "piece_id": piece,
                    "snippet_index": index,
                    "first_measure": index * hop,
                    "stop_measure": index * hop + window,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("window", "hop"), [(4, 4), (4, 2), (4, 1), (3, 2), (2, 3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_test_snippet_overlaps_a_train_snippet_of_its_piece(window, hop, seed):
    snippets = snippets_frame({f"p{i}": count for i, count in enumerate([1, 2, 3, 5, 8, 13, 21])}, window, hop)
    assignment = snippets.merge(
        by_snippet(snippets, settings(seed=seed, validation_fraction=0.3)), on=["snippet_id", "piece_id"]
    )
    assert (assignment.role == "validation").any()
    for _, piece in assignment.groupby("piece_id"):
        train = piece[piece.role.isin(["train", "validation"])]
        test = piece[piece.role == "test"]
        for (_, a), (_, b) in itertools.product(train.iterrows(), test.iterrows()):
            assert not overlaps(a.first_measure, a.stop_measure, b.first_measure, b.stop_measure)
        # Validation snippets must not share measures with the snippets trained on either.
        for (_, a), (_, b) in itertools.product(
            piece[piece.role == "train"].iterrows(), piece[piece.role == "validation"].iterrows()
        ):
            assert not overlaps(a.first_measure, a.stop_measure, b.first_measure, b.stop_measure)
        windows = list(zip(piece.first_measure, piece.stop_measure))
        separable = any(not overlaps(*a, *b) for a, b in itertools.combinations(windows, 2))
        # A piece gets test snippets exactly when it can keep a non-overlapping one for training.
        assert (len(test) >= 1 and len(train) >= 1) == separable


def test_overlapping_neighbours_are_dropped_not_trained_on():
    roles = assign_piece_by_snippet([(0, 4), (2, 6), (4, 8), (6, 10), (8, 12)], 0.2, 0.0, np.random.default_rng(3))
    test = roles.index("test")
    for neighbour in (test - 1, test + 1):
        if 0 <= neighbour < len(roles):
            assert roles[neighbour] == "dropped_overlap"


def test_single_snippet_pieces_stay_in_train_and_are_counted():
    snippets = snippets_frame({"solo": 1, "many": 10}, 4, 4)
    assignment = by_snippet(snippets, settings(0.2))
    assert assignment[assignment.piece_id == "solo"].role.tolist() == ["train"]
    summary = summarise(assignment)
    assert summary["pieces_single_snippet"] == 1 and summary["snippets"]["test"] == 2


def test_by_snippet_is_seeded_and_per_piece_independent():
    snippets = snippets_frame({"a": 10, "b": 10}, 4, 4)
    first = by_snippet(snippets, settings(0.3, 7))
    assert first.equals(by_snippet(snippets, settings(0.3, 7)))
    with_more = by_snippet(snippets_frame({"a": 10, "b": 10, "c": 6}, 4, 4), settings(0.3, 7))
    assert first.equals(with_more[with_more.piece_id != "c"].reset_index(drop=True))
    assert not first.equals(by_snippet(snippets, settings(0.3, 8)))


def test_by_piece_holds_out_whole_pieces():
    snippets = snippets_frame({f"p{i}": 4 for i in range(20)}, 4, 4)
    assignment = by_piece(snippets, settings(0.25, validation_fraction=0.2))
    roles_per_piece = assignment.groupby("piece_id").role.nunique()
    assert (roles_per_piece == 1).all()
    assert assignment[assignment.role == "test"].piece_id.nunique() == 5
    assert assignment[assignment.role == "validation"].piece_id.nunique() == 3


def test_by_piece_keeps_audit_groups_on_one_side():
    snippets = snippets_frame({f"p{i:02d}": 3 for i in range(30)}, 4, 4)
    groups = pd.DataFrame(
        {
            "piece_id": [f"p{i:02d}" for i in range(30)],
            "music_group": "",
            "tune_group": ["tuneA" if i < 6 else ("tuneB" if i < 9 else "") for i in range(30)],
        }
    )
    for seed in range(10):
        assignment = by_piece(snippets, settings(0.3, seed, 0.2), groups)
        roles = assignment.groupby("piece_id").role.first()
        for members in (groups.piece_id[:6], groups.piece_id[6:9]):
            assert roles[members].nunique() == 1, seed


def test_by_piece_is_stable_when_pieces_are_added():
    base = by_piece(snippets_frame({f"p{i:02d}": 2 for i in range(40)}, 4, 4), settings(0.2, 3))
    more = by_piece(snippets_frame({f"p{i:02d}": 2 for i in range(41)}, 4, 4), settings(0.2, 3))
    test_before = set(base[base.role == "test"].piece_id)
    test_after = set(more[more.role == "test"].piece_id)
    assert len(test_before & test_after) >= len(test_before) - 1


PIECE_SIZES = {f"p{i}": count for i, count in enumerate([2, 3, 5, 8, 13, 21])}


@pytest.mark.parametrize(("window", "hop"), [(4, 2), (4, 1), (3, 2), (6, 2), (4, 3), (2, 1)])
def test_without_the_guard_test_snippets_share_measures_with_training(window, hop):
    snippets = snippets_frame(PIECE_SIZES, window, hop)
    guarded = by_snippet(snippets, {**settings(0.2, validation_fraction=0.15), "overlap_guard": True})
    unguarded = by_snippet(snippets, {**settings(0.2, validation_fraction=0.15), "overlap_guard": False})
    assert leaked_test_snippets(guarded, snippets) == 0
    leaked = leaked_test_snippets(unguarded, snippets)
    assert leaked > 0
    # Nothing is dropped without the guard, and every piece of two or more snippets is tested.
    assert not (unguarded.role == "dropped_overlap").any()
    tested = unguarded[unguarded.role == "test"].piece_id.unique()
    assert sorted(tested) == sorted(PIECE_SIZES)
    assert summarise(unguarded, snippets)["test_snippets_sharing_measures_with_training"] == leaked


def test_without_the_guard_every_test_snippet_of_a_long_piece_overlaps_training():
    # Window 4, hop 1: a test snippet away from the piece's ends shares measures with up to six others.
    snippets = snippets_frame({"long": 40}, 4, 1)
    unguarded = by_snippet(snippets, {**settings(0.2), "overlap_guard": False})
    assert leaked_test_snippets(unguarded, snippets) == (unguarded.role == "test").sum() == 8


def test_the_guard_is_moot_for_windows_that_do_not_overlap():
    snippets = snippets_frame(PIECE_SIZES, 4, 4)
    unguarded = by_snippet(snippets, {**settings(0.2), "overlap_guard": False})
    assert leaked_test_snippets(unguarded, snippets) == 0


def test_leaky_means_a_by_snippet_split_without_the_guard():
    assert is_leaky({"split": "by_snippet", "overlap_guard": False})
    assert not is_leaky({"split": "by_snippet", "overlap_guard": True})
    assert not is_leaky({"split": "by_snippet"})  # recorded before the option existed: guarded
    assert not is_leaky({"split": "by_piece", "overlap_guard": False})  # whole pieces are held out either way
