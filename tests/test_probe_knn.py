"""Kind knn: cosine nearest neighbours, k chosen on validation."""

import numpy as np
import pytest
from test_classify import clustered_dataset
from test_probe_logistic import with_validation

from workflow_scripts.probes.kinds import settings_from_config
from workflow_scripts.probes.kinds.knn import KnnSettings, knn_scores
from workflow_scripts.stages.classify import run_probe


def test_scores_sum_the_similarity_of_the_k_nearest_and_order_every_piece():
    reference = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.2]])
    labels = np.array([0, 0, 1, 2])
    scores = knn_scores(np.array([[1.0, 0.05]]), reference, labels, classes=3, k=2)
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    query = np.array([1.0, 0.05]) / np.linalg.norm([1.0, 0.05])
    assert scores[0, 0] == pytest.approx((unit[:2] @ query).sum(), abs=1e-5)
    # Pieces with no vote still rank by their nearest snippet: piece 1 above piece 2.
    assert scores[0, 1] > scores[0, 2] and abs(scores[0, 1]) < 1e-5


def test_it_learns_separable_classes_and_chooses_k_on_validation():
    table, embedder, assignment = clustered_dataset()
    metrics = run_probe(table, embedder, with_validation(assignment), KnnSettings())["metrics"]
    assert metrics["top1"] >= 0.9
    best = max(point["validation_top1"] for point in metrics["k_path"])
    assert metrics["selected"]["k"] == min(p["k"] for p in metrics["k_path"] if p["validation_top1"] == best)
    assert metrics["top5"] == 1.0


def test_settings_refuse_a_weighted_layer_and_a_zero_k():
    with pytest.raises(ValueError, match="weighted"):
        settings_from_config({"kind": "knn", "layer": "weighted"})
    with pytest.raises(ValueError, match="k_grid"):
        settings_from_config({"kind": "knn", "k_grid": [0]})
