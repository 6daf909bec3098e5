import numpy as np
import pytest

from workflow_scripts.probes.geometry import layer_geometry, pairwise_distances
from workflow_scripts.stages.geometry import geometry_table, sample_rows, tsne_map


def test_pairwise_distances_worked_example():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    assert pairwise_distances(vectors, "euclidean")[0, 1] == pytest.approx(np.sqrt(5))
    cosine = pairwise_distances(vectors, "cosine")
    assert cosine[0, 1] == pytest.approx(1.0) and cosine[0, 2] == pytest.approx(0.0)


def test_separated_pieces_give_auc_one_and_random_vectors_about_half():
    rng = np.random.default_rng(0)
    pieces = np.repeat(np.arange(10), 5)
    clustered = rng.normal(size=(10, 16))[pieces] * 10 + rng.normal(size=(50, 16))
    figures, _ = layer_geometry(clustered, pieces)
    assert figures["auc_cosine"] > 0.99 and figures["nn_accuracy_euclidean"] == 1.0
    noise, _ = layer_geometry(rng.normal(size=(50, 16)), pieces)
    assert 0.35 < noise["auc_euclidean"] < 0.65


def test_geometry_table_has_a_row_per_layer_and_the_mean():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, 3, 4))
    table, samples = geometry_table(vectors, np.repeat(np.arange(5), 4))
    assert table.layer.tolist() == ["mean", "0", "1", "2"]
    assert set(samples["1"]) == {"cosine", "euclidean"}


def test_sampling_and_tsne():
    assert len(sample_rows(10, 100, 0)) == 10
    chosen = sample_rows(1000, 50, 0)
    assert len(chosen) == 50 and np.array_equal(chosen, sample_rows(1000, 50, 0))
    rng = np.random.default_rng(2)
    pieces = np.repeat(np.array([f"p{i}" for i in range(8)]), 6)
    points = tsne_map(rng.normal(size=(48, 5)), pieces, 4, 0)
    assert points.piece_id.nunique() == 4 and len(points) == 24
