import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from workflow_scripts.classify import ProbeSettings, assemble, fit_normalization, run_probe, select_layer
from workflow_scripts.embeddings_table import embeddings_to_table


def clustered_dataset(classes=6, per_class=10, dim=16, layers=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(classes, layers, dim))
    vectors = np.concatenate([centres[c] + rng.normal(0, 1, size=(per_class, layers, dim)) for c in range(classes)])
    pieces = [f"p{c}" for c in range(classes) for _ in range(per_class)]
    snippet_ids = [f"p{c}:{i:03d}" for c in range(classes) for i in range(per_class)]
    table = embeddings_to_table(snippet_ids, pieces, [int(s[-3:]) for s in snippet_ids], vectors.astype(np.float32))
    roles = ["test" if int(s[-3:]) % 5 == 0 else "train" for s in snippet_ids]
    assignment = pd.DataFrame({"snippet_id": snippet_ids, "piece_id": pieces, "role": roles})
    return table, {"layers": layers, "dim": dim}, assignment


@pytest.mark.parametrize(
    "probe",
    [
        ProbeSettings(optimizer="adam", epochs=60, batch_size=16, learning_rate=0.01),
        ProbeSettings(optimizer="lbfgs", normalization="standardize", weight_decay=1e-3),
        ProbeSettings(optimizer="adam", normalization="l2", epochs=60, batch_size=16, learning_rate=0.01, layer="last"),
    ],
)
def test_probes_learn_separable_classes(probe):
    table, embedder, assignment = clustered_dataset()
    result = run_probe(table, embedder, assignment, probe)
    metrics = result["metrics"]
    assert metrics["top1"] >= 0.9
    assert metrics["top5"] == 1.0
    assert metrics["classes"] == 6 and metrics["test_snippets"] == 12 and metrics["train_snippets"] == 48
    assert len(result["predictions"]) == 12
    assert metrics["top1_ci95"][0] <= metrics["top1"] <= metrics["top1_ci95"][1]


def test_training_is_deterministic():
    table, embedder, assignment = clustered_dataset(seed=3)
    probe = ProbeSettings(optimizer="adam", epochs=20, batch_size=8)
    first = run_probe(table, embedder, assignment, probe)
    second = run_probe(table, embedder, assignment, probe)
    assert np.array_equal(first["scores"], second["scores"])


def test_select_layer():
    vectors = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    assert np.array_equal(select_layer(vectors, 0), vectors[:, 0])
    assert np.array_equal(select_layer(vectors, "last"), vectors[:, 2])
    assert np.array_equal(select_layer(vectors, "mean"), vectors.mean(axis=1))
    with pytest.raises(ValueError, match="3 layers"):
        select_layer(vectors, 5)


def test_standardisation_uses_train_statistics_only():
    train = np.array([[0.0, 10.0], [2.0, 30.0]])
    normalize = fit_normalization(train, "standardize")
    assert normalize(np.array([[1.0, 20.0]])) == pytest.approx(np.array([[0.0, 0.0]]))
    l2 = fit_normalization(train, "l2")(np.array([[3.0, 4.0]]))
    assert l2 == pytest.approx(np.array([[0.6, 0.8]]))


def test_held_out_pieces_cannot_be_classified():
    features = np.zeros((4, 2))
    assignment = pd.DataFrame({"snippet_id": list("abcd"), "piece_id": ["x", "x", "y", "y"], "role": ["train", "train", "test", "test"]})
    with pytest.raises(ValueError, match="retrieval"):
        assemble(list("abcd"), ["x", "x", "y", "y"], features, assignment)


def test_dropped_snippets_are_neither_trained_nor_tested():
    table, embedder, assignment = clustered_dataset()
    assignment.loc[assignment.snippet_id.str.endswith("001"), "role"] = "dropped_overlap"
    metrics = run_probe(table, embedder, assignment, ProbeSettings(optimizer="lbfgs"))["metrics"]
    assert metrics["dropped_overlap_snippets"] == 6 and metrics["train_snippets"] == 42


def test_probe_settings_reject_unknown_choices():
    with pytest.raises(ValueError, match="normalization"):
        ProbeSettings.from_config({"normalization": "zscore"})
