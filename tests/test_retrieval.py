import numpy as np
import pandas as pd
import pytest

from workflow_scripts.stages.retrieval import (
    cosine_similarities,
    evaluate_retrieval,
    per_query_metrics,
    summarise_queries,
)


def test_per_query_metrics_worked_example():
    labels = np.array(["a", "a", "b", "b", "a"])
    # Similarities chosen so that, for query 0, the ranking of the others is 2, 1, 4, 3:
    # relevant (label a) at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2, first relevant rank 2.
    similarities = np.zeros((5, 5))
    similarities[0, [2, 1, 4, 3]] = [0.9, 0.8, 0.7, 0.6]
    table = per_query_metrics(similarities, labels).set_index("query")
    assert table.loc[0, "average_precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert table.loc[0, "first_relevant_rank"] == 2
    assert table.loc[0, "reciprocal_rank"] == pytest.approx(0.5)
    assert table.loc[0, ["hit_at_1", "hit_at_5", "hit_at_10"]].tolist() == [0.0, 1.0, 1.0]


def test_queries_without_another_relevant_snippet_are_counted_not_scored():
    labels = np.array(["a", "a", "solo"])
    table = per_query_metrics(cosine_similarities(np.eye(3)), labels)
    assert sorted(table["query"]) == [0, 1]
    summary = summarise_queries(table, 3, 100, 0)
    assert summary["queries"] == 2 and summary["queries_without_relevant"] == 1


def test_perfectly_clustered_pieces_score_one():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 8)) * 10
    vectors = np.repeat(centres, 4, axis=0) + rng.normal(scale=0.01, size=(24, 8))
    pieces = np.repeat([f"p{i}" for i in range(6)], 4)
    roles = np.where(np.isin(pieces, ["p4", "p5"]), "test", "train")
    _, summary, _ = evaluate_retrieval(vectors, pieces, roles, 100, 0)
    raw = next(row for row in summary["results"] if row["representation"] == "raw")
    assert raw["map"] == pytest.approx(1.0) and raw["mr1"] == 1.0 and raw["hr@1"] == 1.0
    assert {row["representation"] for row in summary["results"]} == {"raw", "standardized", "lda"}
    assert summary["held_out_pieces"] == 2 and summary["training_pieces"] == 4


def test_a_split_without_held_out_pieces_is_refused():
    with pytest.raises(ValueError, match="no test role"):
        evaluate_retrieval(np.zeros((4, 2)), np.array(list("aabb")), np.array(["train"] * 4), 10, 0)


def test_tied_scores_share_their_block_last_rank_for_ap_and_first_rank_alike():
    from sklearn.metrics import average_precision_score

    from workflow_scripts.stages.retrieval import average_precision, tie_block_ranks

    scores = np.array([0.9, 0.9, 0.5, 0.5, 0.5, 0.1])
    assert tie_block_ranks(scores).tolist() == [2, 2, 5, 5, 5, 6]
    rng = np.random.default_rng(0)
    for _ in range(300):  # the rule is scikit-learn's tie-aware average precision
        tied = rng.integers(0, 4, size=12).astype(float)
        relevant = rng.random(12) < 0.4
        if relevant.any():
            expected = average_precision_score(relevant, tied)
            assert average_precision(relevant, tie_block_ranks(tied)) == pytest.approx(expected)
    # Query 0 ties a relevant and an irrelevant snippet at the top: the first relevant rank is 2
    # whichever comes first in row order, as AP counts the block at once (precision 1/2).
    for order in (["a", "b"], ["b", "a"]):
        labels = np.array(["a", *order, "b"])
        similarities = np.zeros((4, 4))
        similarities[0, 1:] = [0.8, 0.8, 0.1]
        row = per_query_metrics(similarities, labels).set_index("query").loc[0]
        assert row.first_relevant_rank == 2 and row.average_precision == pytest.approx(0.5)


def test_same_music_relevance_counts_the_other_file_of_a_chorale():
    # p and p_copy are the same music under two ids; q is another piece.
    labels = np.array(["p", "p_copy", "q", "q"])
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    strict = per_query_metrics(cosine_similarities(vectors), labels)
    assert sorted(strict["query"]) == [2, 3]  # p and p_copy have no other snippet of their own piece
    units = np.array(["g", "g", "q", "q"])
    same_music = per_query_metrics(cosine_similarities(vectors), labels, units).set_index("query")
    assert same_music.loc[0, "first_relevant_rank"] == 1 and same_music.loc[0, "piece"] == "p"
    training = np.array([[1.0, 1.0], [1.0, 0.9], [0.5, 1.0], [0.4, 1.0]])
    roles = np.array(["test"] * 4 + ["train"] * 4)
    pieces = np.concatenate([labels, ["r", "r", "s", "s"]])
    _, summary, _ = evaluate_retrieval(
        np.vstack([vectors, training]), pieces, roles, 100, 0, music_group_of={"p": "g", "p_copy": "g"}
    )
    raw = next(row for row in summary["results"] if row["representation"] == "raw")
    assert raw["queries"] == 2 and raw["same_music"]["queries"] == 4 and raw["same_music"]["map"] == pytest.approx(1.0)


def test_retrieval_intervals_resample_held_out_pieces():
    from workflow_scripts.probes.metrics import bootstrap_ci

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "piece": np.repeat([f"p{i}" for i in range(20)], 5),
            "average_precision": rng.random(100),
            "first_relevant_rank": 1,
            "reciprocal_rank": 1.0,
            "hit_at_1": 1.0,
            "hit_at_5": 1.0,
            "hit_at_10": 1.0,
        }
    )
    summary = summarise_queries(table, 100, 200, 7)
    expected = bootstrap_ci(table.average_precision.to_numpy(), 200, 7, clusters=table.piece.to_numpy())
    assert summary["map_ci95"] == expected
    assert summary["ci95_resampling"].startswith("held-out pieces")
