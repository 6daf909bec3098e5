import numpy as np
import pytest

from workflow_scripts.retrieval import cosine_similarities, evaluate_retrieval, per_query_metrics, summarise_queries


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
