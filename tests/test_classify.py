import numpy as np
import pandas as pd
import pytest

from workflow_scripts.plumbing.embeddings_table import embeddings_to_table
from workflow_scripts.probes.kinds import settings_from_config
from workflow_scripts.probes.kinds.neural import NeuralSettings, torch_threads
from workflow_scripts.probes.layers import select_layer
from workflow_scripts.probes.probe_data import assemble, fit_normalization
from workflow_scripts.stages.classify import run_probe


def back_to_back_assignment(snippet_ids: list[str], pieces: list[str], test_every: int) -> pd.DataFrame:
    """Roles for snippets named ``piece:NNN``: every ``test_every``-th in test, the rest in
    train, each four measures of its piece back to back, as the default segmentation cuts them."""
    index = np.array([int(snippet[-3:]) for snippet in snippet_ids])
    return pd.DataFrame(
        {
            "snippet_id": snippet_ids,
            "piece_id": pieces,
            "role": np.where(index % test_every == 0, "test", "train"),
            "first_measure": index * 4,
            "stop_measure": index * 4 + 4,
        }
    )


def clustered_dataset(classes=6, per_class=10, dim=16, layers=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(classes, layers, dim))
    vectors = np.concatenate([centres[c] + rng.normal(0, 1, size=(per_class, layers, dim)) for c in range(classes)])
    pieces = [f"p{c}" for c in range(classes) for _ in range(per_class)]
    snippet_ids = [f"p{c}:{i:03d}" for c in range(classes) for i in range(per_class)]
    table = embeddings_to_table(snippet_ids, pieces, [int(s[-3:]) for s in snippet_ids], vectors.astype(np.float32))
    assignment = back_to_back_assignment(snippet_ids, pieces, test_every=5)
    return table, {"layers": layers, "dim": dim}, assignment


@pytest.mark.parametrize(
    "probe",
    [
        NeuralSettings(optimizer="adam", epochs=60, batch_size=16, learning_rate=0.01),
        NeuralSettings(optimizer="lbfgs", normalization="standardize", weight_decay=1e-3),
        NeuralSettings(
            optimizer="adam", normalization="l2", epochs=60, batch_size=16, learning_rate=0.01, layer="last"
        ),
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
    probe = NeuralSettings(optimizer="adam", epochs=20, batch_size=8)
    first = run_probe(table, embedder, assignment, probe)
    second = run_probe(table, embedder, assignment, probe)
    assert np.array_equal(first["scores"], second["scores"])


def overlapping_dataset(classes=100, per_class=8, dim=96, seed=0):
    """Classes that overlap, so L-BFGS runs all its iterations; big enough for torch to split products over threads."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, size=(classes, 1, dim))
    vectors = np.concatenate([centres[c] + rng.normal(0, 2, size=(per_class, 1, dim)) for c in range(classes)])
    pieces = [f"p{c}" for c in range(classes) for _ in range(per_class)]
    snippet_ids = [f"p{c}:{i:03d}" for c in range(classes) for i in range(per_class)]
    table = embeddings_to_table(snippet_ids, pieces, [int(s[-3:]) for s in snippet_ids], vectors.astype(np.float32))
    roles = ["test" if int(s[-3:]) % 4 == 0 else "train" for s in snippet_ids]
    assignment = pd.DataFrame({"snippet_id": snippet_ids, "piece_id": pieces, "role": roles})
    return table, {"layers": 1, "dim": dim}, assignment


def test_lbfgs_scores_are_the_same_bits_on_one_and_two_threads():
    # In float32 on the job's threads, these scores differed by 3e-4 between one and two threads
    # (by 0.9 on the spectral piano data, one test snippet of linear_lbfgs_std).
    import torch

    table, embedder, assignment = overlapping_dataset()
    probe = NeuralSettings(optimizer="lbfgs", normalization="standardize", weight_decay=0.01, lbfgs_max_iter=50)
    scores = {}
    for threads in (1, 2):
        with torch_threads(threads):
            scores[threads] = run_probe(table, embedder, assignment, probe)["scores"]
            assert torch.get_num_threads() == threads, "the probe must give the caller back its thread count"
    assert np.array_equal(scores[1], scores[2]), f"scores differ by up to {np.abs(scores[1] - scores[2]).max():.3g}"
    assert scores[1].dtype == np.float64


def test_select_layer():
    vectors = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    assert np.array_equal(select_layer(vectors, 0)[:, 0], vectors[:, 0])
    assert np.array_equal(select_layer(vectors, "last")[:, 0], vectors[:, 2])
    assert np.array_equal(select_layer(vectors, "mean")[:, 0], vectors.mean(axis=1))
    assert select_layer(vectors, "weighted").shape == (2, 3, 2)
    with pytest.raises(ValueError, match="3 layers"):
        select_layer(vectors, 5)


def test_standardisation_uses_train_statistics_only():
    train = np.array([[0.0, 10.0], [2.0, 30.0]])
    normalize = fit_normalization(train, "standardize")
    assert normalize(np.array([[1.0, 20.0]])) == pytest.approx(np.array([[0.0, 0.0]]))
    l2 = fit_normalization(train, "l2")(np.array([[3.0, 4.0]]))
    assert l2 == pytest.approx(np.array([[0.6, 0.8]]))


def test_held_out_pieces_cannot_be_classified():
    features = np.zeros((4, 1, 2))
    assignment = pd.DataFrame(
        {"snippet_id": list("abcd"), "piece_id": ["x", "x", "y", "y"], "role": ["train", "train", "test", "test"]}
    )
    with pytest.raises(ValueError, match="retrieval"):
        assemble(list("abcd"), ["x", "x", "y", "y"], features, assignment)


def test_dropped_snippets_are_neither_trained_nor_tested():
    table, embedder, assignment = clustered_dataset()
    assignment.loc[assignment.snippet_id.str.endswith("001"), "role"] = "dropped_overlap"
    metrics = run_probe(table, embedder, assignment, NeuralSettings(optimizer="lbfgs"))["metrics"]
    assert metrics["dropped_overlap_snippets"] == 6 and metrics["train_snippets"] == 42


def with_validation(assignment):
    assignment = assignment.copy()
    assignment.loc[assignment.snippet_id.str.endswith(("003", "007")), "role"] = "validation"
    return assignment


def test_mlp_with_early_stopping_selects_on_validation_not_test():
    table, embedder, assignment = clustered_dataset(seed=4)
    probe = NeuralSettings(
        head="mlp",
        hidden_units=32,
        dropout=0.1,
        epochs=80,
        batch_size=16,
        learning_rate=0.01,
        early_stopping=True,
        patience=10,
    )
    result = run_probe(table, embedder, with_validation(assignment), probe)
    metrics = result["metrics"]
    assert metrics["top1"] >= 0.9 and metrics["validation_snippets"] == 12 and metrics["train_snippets"] == 36
    assert "test_top1" not in result["curve"] and "validation_top1" in result["curve"]
    assert 1 <= metrics["selected_step"] <= len(result["curve"])


def test_the_fixed_recipe_trains_on_train_and_validation():
    table, embedder, assignment = clustered_dataset()
    result = run_probe(table, embedder, with_validation(assignment), NeuralSettings(optimizer="lbfgs"))
    assert result["metrics"]["validation_snippets"] == 12 and "test_top1" in result["curve"]


def test_learned_layer_weights_favour_the_informative_layer():
    rng = np.random.default_rng(5)
    table, embedder, assignment = clustered_dataset(layers=2, seed=5)
    from workflow_scripts.plumbing.embeddings_table import embeddings_to_table, table_to_embeddings

    vectors = table_to_embeddings(table, 2, 16).copy()
    vectors[:, 0, :] = rng.normal(size=vectors[:, 0, :].shape)  # layer 0 carries no information
    noisy = embeddings_to_table(
        table.column("snippet_id").to_pylist(),
        table.column("piece_id").to_pylist(),
        table.column("snippet_index").to_pylist(),
        vectors,
    )
    probe = NeuralSettings(layer="weighted", epochs=150, batch_size=16, learning_rate=0.02)
    metrics = run_probe(noisy, embedder, assignment, probe)["metrics"]
    assert metrics["layer_weights"][1] > metrics["layer_weights"][0]
    assert metrics["top1"] >= 0.8


def test_group_level_accuracy_counts_confusions_inside_a_group():
    from workflow_scripts.probes.metrics import group_accuracy

    groups = {"a": "g1", "b": "g1", "c": ""}
    assert group_accuracy(np.array(["a", "a", "c"]), np.array(["b", "a", "a"]), groups) == pytest.approx(2 / 3)


def test_probe_settings_reject_unknown_choices():
    with pytest.raises(ValueError, match="normalization"):
        settings_from_config({"normalization": "zscore"})
    with pytest.raises(ValueError, match="lbfgs"):
        settings_from_config({"optimizer": "lbfgs", "head": "mlp"})


def test_early_stopping_without_validation_snippets_is_refused_with_the_fix():
    table, embedder, assignment = clustered_dataset()  # train and test only, as with validation_fraction 0
    with pytest.raises(ValueError, match="validation_fraction"):
        run_probe(table, embedder, assignment, NeuralSettings(optimizer="adam", early_stopping=True, epochs=5))
