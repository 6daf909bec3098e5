import numpy as np
import pytest

from workflow_scripts.probes.metrics import (
    attractors,
    bootstrap_ci,
    inverse_frequency_weights,
    per_class_accuracy,
    summarise_predictions,
    top_k_accuracy,
    top_k_correct,
)


def test_inverse_frequency_weights_worked_example():
    # counts 1, 2, 4 -> inverse 1, 1/2, 1/4, sum 7/4 -> v = (4/7, 2/7, 1/7) * 3
    weights = inverse_frequency_weights(np.array([0, 1, 1, 2, 2, 2, 2]), 3)
    assert weights == pytest.approx([12 / 7, 6 / 7, 3 / 7])
    assert weights.sum() == pytest.approx(3)


def test_top_k_worked_example():
    labels = np.array([0, 1, 2, 2])
    scores = np.array(
        [
            [0.9, 0.05, 0.03, 0.02],  # right at 1
            [0.5, 0.3, 0.1, 0.1],  # right at 2
            [0.1, 0.2, 0.3, 0.4],  # right at 2
            [0.4, 0.3, 0.2, 0.1],  # right at 3
        ]
    )
    assert top_k_accuracy(labels, scores, 1) == pytest.approx(0.25)
    assert top_k_accuracy(labels, scores, 2) == pytest.approx(0.75)
    assert top_k_accuracy(labels, scores, 5) == pytest.approx(1.0)
    assert top_k_correct(labels, scores, 2).tolist() == [True, True, True, False]


def test_per_class_accuracy_and_attractors():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 2, 2, 2, 1, 2])
    table = per_class_accuracy(labels, predictions, ["a", "b", "c", "d"])
    assert table["class"].tolist() == ["a", "b", "c"]  # d has no test samples
    assert table.accuracy.tolist() == pytest.approx([0.5, 1 / 3, 1.0])
    assert attractors(labels, predictions, ["a", "b", "c", "d"]) == [{"class": "c", "wrong_predictions": 3}]


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_data():
    rng = np.random.default_rng(0)
    small = rng.random(50) < 0.3
    large = rng.random(5000) < 0.3
    low_small, high_small = bootstrap_ci(small, 2000, 0)
    low_large, high_large = bootstrap_ci(large, 2000, 0)
    assert low_small <= small.mean() <= high_small
    assert low_large <= large.mean() <= high_large
    assert high_large - low_large < high_small - low_small
    assert bootstrap_ci(np.ones(10), 100, 0) == (1.0, 1.0)


def test_summary_counts_classes_at_zero_and_full():
    labels = np.array([0, 0, 1, 2])
    scores = np.eye(3)[[0, 0, 2, 2]]
    summary, _ = summarise_predictions(labels, scores, ["a", "b", "c"], 100, 0)
    assert summary["top1"] == pytest.approx(0.75)
    assert summary["classes_at_0"] == 1 and summary["classes_at_100"] == 2
    assert summary["per_class_median"] == pytest.approx(1.0)


def test_cluster_bootstrap_of_equal_clusters_is_the_bootstrap_of_their_means():
    # Three pieces of two test snippets each; per-piece top-1 1, 1/2 and 0.
    values = np.array([1, 1, 1, 0, 0, 0], dtype=float)
    pieces = np.array(["a", "a", "b", "b", "c", "c"])
    assert bootstrap_ci(values, 500, 3, clusters=pieces) == bootstrap_ci(np.array([1.0, 0.5, 0.0]), 500, 3)


def test_cluster_bootstrap_worked_example_with_unequal_clusters():
    from workflow_scripts.probes.metrics import _cluster_resample_means

    # Piece a: three snippets, all right; piece b: one snippet, wrong. A resample draws two
    # pieces: {a, a} -> 6/6 = 1 (p 1/4), {a, b} -> 3/4 (p 1/2), {b, b} -> 0 (p 1/4).
    values, pieces = np.array([1.0, 1.0, 1.0, 0.0]), np.array(["a", "a", "a", "b"])
    means = _cluster_resample_means(values, pieces, 4000, np.random.default_rng(0))
    assert set(np.unique(means)) == {0.0, 0.75, 1.0}
    assert np.mean(means == 0.75) == pytest.approx(0.5, abs=0.03)
    assert bootstrap_ci(values, 4000, 0, clusters=pieces) == (0.0, 1.0)
    # Resampling snippets instead never sees a resample without a right answer this often.
    assert bootstrap_ci(values, 4000, 0)[0] > 0.0


def test_cluster_bootstrap_is_wider_than_the_snippet_bootstrap_on_correlated_data():
    rng = np.random.default_rng(1)
    pieces = np.repeat(np.arange(80), 6)
    easy_or_hard = rng.beta(0.5, 1.5, size=80)  # a piece's snippets are recognised together or not at all
    correlated = (rng.random(pieces.size) < easy_or_hard[pieces]).astype(float)
    independent = (rng.random(pieces.size) < correlated.mean()).astype(float)

    def width(interval):
        return interval[1] - interval[0]

    assert width(bootstrap_ci(correlated, 2000, 0, clusters=pieces)) > 1.4 * width(bootstrap_ci(correlated, 2000, 0))
    ratio = width(bootstrap_ci(independent, 2000, 0, clusters=pieces)) / width(bootstrap_ci(independent, 2000, 0))
    assert 0.8 < ratio < 1.25


def test_cluster_labels_must_match_the_values():
    with pytest.raises(ValueError, match="one label per value"):
        bootstrap_ci(np.ones(4), 10, 0, clusters=np.array(["a", "b"]))


def test_summary_intervals_resample_test_pieces_and_say_so():
    # Piece 0's three test snippets are right, piece 1's three wrong: only resampling pieces
    # reaches resamples that are all right or all wrong.
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.eye(3)[[0, 0, 0, 0, 0, 0]] + np.array([0.0, 0.0, 0.5])
    summary, _ = summarise_predictions(labels, scores, ["a", "b", "c"], 2000, 0)
    assert summary["top1"] == pytest.approx(0.5)
    assert summary["top1_ci95"] == (0.0, 1.0)
    assert summary["ci95_resampling"].startswith("pieces")
