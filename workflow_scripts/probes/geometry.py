"""Embedding geometry: are snippets of one piece closer to each other than to other pieces?

For every layer: cosine and Euclidean distances between all pairs of snippets (or a
seeded sample of ``max_snippets``), split into same-piece and different-piece pairs; the
ROC AUC of predicting "same piece" from the distance (scikit-learn; 0.5 is chance, 1.0
means every same-piece pair is closer than every different-piece pair); and leave-one-out
1-nearest-neighbour piece accuracy. If the AUC is high while a probe fails, the ceiling
is the classifier; if it is near 0.5, it is the embedding.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

METRICS = ("cosine", "euclidean")


def pairwise_distances(vectors: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    squared = (vectors**2).sum(axis=1)
    return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * vectors @ vectors.T, 0.0))


def layer_geometry(
    vectors: np.ndarray, pieces: np.ndarray
) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Figures for one layer, and the same/different distance samples for plotting."""
    upper = np.triu_indices(len(pieces), k=1)
    same = (pieces[:, None] == pieces[None, :])[upper]
    figures: dict[str, float] = {"same_pairs": int(same.sum()), "different_pairs": int((~same).sum())}
    samples = {}
    for metric in METRICS:
        distances = pairwise_distances(vectors.astype(np.float64), metric)
        pair_distances = distances[upper]
        figures[f"auc_{metric}"] = (
            float(roc_auc_score(same, -pair_distances)) if same.any() and (~same).any() else float("nan")
        )
        figures[f"mean_same_{metric}"] = float(pair_distances[same].mean()) if same.any() else float("nan")
        figures[f"mean_different_{metric}"] = float(pair_distances[~same].mean())
        np.fill_diagonal(distances, np.inf)
        nearest = distances.argmin(axis=1)
        has_partner = (pieces[:, None] == pieces[None, :]).sum(axis=1) > 1
        figures[f"nn_accuracy_{metric}"] = float((pieces[nearest] == pieces)[has_partner].mean())
        samples[metric] = (pair_distances[same], pair_distances[~same])
    return figures, samples
