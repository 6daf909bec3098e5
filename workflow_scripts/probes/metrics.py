"""Classification metrics: top-k, per-class accuracy, confusion, bootstrap intervals.

Top-k and the confusion matrix come from scikit-learn; the per-class summary and the
percentile bootstrap are small and tested against worked examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, top_k_accuracy_score


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The report's class weights v_c = (1/n_c) / sum_j (1/n_j) * C; a class absent from ``labels`` gets 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return inverse / inverse.sum() * num_classes


def top_k_correct(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per-sample booleans: is the true label among the ``k`` highest scores?"""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def top_k_accuracy(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    if len(labels) == 0:
        return float("nan")
    num_classes = scores.shape[1]
    if k >= num_classes:  # every label is in the top k
        return 1.0
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(num_classes)))


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """One row per class that has test samples: support, correct, accuracy."""
    support = np.bincount(labels, minlength=len(class_names))
    correct = np.bincount(labels[predictions == labels], minlength=len(class_names))
    present = support > 0
    return pd.DataFrame(
        {
            "class": np.array(class_names)[present],
            "support": support[present],
            "correct": correct[present],
            "accuracy": correct[present] / support[present],
        }
    )


def bootstrap_ci(
    values: np.ndarray, resamples: int, seed: int, level: float = 0.95, clusters: np.ndarray | None = None
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    Without ``clusters`` each value is resampled on its own: right when the values are
    independent draws. With ``clusters`` (one label per value, e.g. the piece a test snippet
    or query comes from) whole clusters are resampled with replacement, all their values
    together, and each resample's statistic is the mean over every value it holds. Values
    of one cluster are correlated (snippets of one piece are easy or hard together), so
    treating them as independent makes an interval too narrow for a claim about pieces.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if clusters is None:
        means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    else:
        means = _cluster_resample_means(values, np.asarray(clusters), resamples, rng)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _cluster_resample_means(
    values: np.ndarray, clusters: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    if clusters.shape != values.shape:
        raise ValueError(
            f"bootstrap clusters: {clusters.shape[0]} labels for {values.size} values; give one label per value"
        )
    _, cluster_index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(cluster_index, weights=values)
    sizes = np.bincount(cluster_index).astype(np.float64)
    drawn = rng.integers(0, sums.size, size=(resamples, sums.size))
    return sums[drawn].sum(axis=1) / sizes[drawn].sum(axis=1)


# Which resampling unit an interval uses, written next to every interval in metrics.json.
RESAMPLED_PIECES = "pieces: every test snippet of a resampled piece together (cluster bootstrap)"
RESAMPLED_QUERIES_BY_PIECE = "held-out pieces: every query of a resampled piece together (cluster bootstrap)"


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    return confusion_matrix(labels, predictions, labels=np.arange(num_classes))


def attractors(
    labels: np.ndarray, predictions: np.ndarray, class_names: list[str], top: int = 10
) -> list[dict[str, Any]]:
    """The classes that absorb the most wrong predictions."""
    wrong = predictions[predictions != labels]
    counts = np.bincount(wrong, minlength=len(class_names))
    order = np.argsort(-counts, kind="stable")[:top]
    return [{"class": class_names[i], "wrong_predictions": int(counts[i])} for i in order if counts[i] > 0]


def summarise_predictions(
    labels: np.ndarray, scores: np.ndarray, class_names: list[str], bootstrap_resamples: int, seed: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Headline figures. The intervals resample test pieces, each with all its test snippets
    (``labels`` name the pieces), because the snippets of one piece are not independent."""
    predictions = scores.argmax(axis=1)
    table = per_class_accuracy(labels, predictions, class_names)
    top1 = top_k_correct(labels, scores, 1)
    top5 = top_k_correct(labels, scores, 5)
    summary = {
        "top1": top_k_accuracy(labels, scores, 1),
        "top5": top_k_accuracy(labels, scores, 5),
        "top1_ci95": bootstrap_ci(top1, bootstrap_resamples, seed, clusters=labels),
        "top5_ci95": bootstrap_ci(top5, bootstrap_resamples, seed + 1, clusters=labels),
        "ci95_resampling": RESAMPLED_PIECES,
        "per_class_mean": float(table.accuracy.mean()) if len(table) else float("nan"),
        "per_class_median": float(table.accuracy.median()) if len(table) else float("nan"),
        "classes_at_0": int((table.accuracy == 0).sum()),
        "classes_at_100": int((table.accuracy == 1).sum()),
        "classes_tested": int(len(table)),
        "attractors": attractors(labels, predictions, class_names),
    }
    return summary, table


def group_accuracy(true_pieces: np.ndarray, predicted_pieces: np.ndarray, group_of: dict[str, str]) -> float:
    """Top-1 where predicting another piece of the true piece's audit group also counts."""
    if len(true_pieces) == 0:
        return float("nan")

    def unit(piece: str) -> str:
        return group_of.get(piece) or piece

    return float(np.mean([unit(true) == unit(predicted) for true, predicted in zip(true_pieces, predicted_pieces)]))
