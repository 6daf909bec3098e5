"""Kind logistic: the fast linear probe, its L2 strength chosen on validation."""

import numpy as np
import pandas as pd
import pytest
from test_classify import clustered_dataset

from workflow_scripts.plumbing.embeddings_table import table_to_embeddings
from workflow_scripts.probes.kinds import settings_from_config
from workflow_scripts.probes.kinds.logistic import LogisticSettings
from workflow_scripts.stages.classify import run_probe


def with_validation(assignment: pd.DataFrame) -> pd.DataFrame:
    index = assignment.snippet_id.str[-3:].astype(int)
    return assignment.assign(role=np.where(index % 5 == 1, "validation", assignment.role))


def test_it_learns_separable_classes_and_records_what_validation_chose():
    table, embedder, assignment = clustered_dataset()
    metrics = run_probe(table, embedder, with_validation(assignment), LogisticSettings())["metrics"]
    assert metrics["top1"] >= 0.9
    path = metrics["l2_path"]
    assert [point["l2"] for point in path] == sorted(LogisticSettings().l2_grid, reverse=True)
    best = max(point["validation_top1"] for point in path)
    chosen = metrics["selected"]["l2"]
    # The chosen penalty has the best validation top-1, and among ties the weakest.
    assert chosen == min(point["l2"] for point in path if point["validation_top1"] == best)
    assert metrics["converged"] and metrics["probe"]["kind"] == "logistic"


def test_validation_not_test_chooses_the_penalty():
    """Relabelling the test snippets changes the test score but never the chosen penalty."""
    table, embedder, assignment = clustered_dataset(classes=8, per_class=12, dim=24, seed=3)
    assignment = with_validation(assignment)
    first = run_probe(table, embedder, assignment, LogisticSettings())["metrics"]
    rng = np.random.default_rng(0)
    test = assignment.role == "test"
    shuffled = assignment.copy()
    shuffled.loc[test, "role"] = np.where(rng.random(test.sum()) < 0.5, "test", "dropped_overlap")
    second = run_probe(table, embedder, shuffled, LogisticSettings())["metrics"]
    assert first["selected"] == second["selected"] and first["l2_path"] == second["l2_path"]


def test_it_reaches_scikit_learns_logistic_regression_at_the_same_penalty_grid():
    """On data where the optimum is well defined, the refit is the regularised MLE scikit-learn finds."""
    from sklearn.linear_model import LogisticRegression

    table, embedder, assignment = clustered_dataset(classes=5, per_class=20, dim=8, layers=1, seed=5)
    assignment = with_validation(assignment)
    l2 = 1e-2
    result = run_probe(
        table, embedder, assignment, LogisticSettings(l2_grid=(l2,), tolerance=1e-8, normalization="none")
    )
    fitted = assignment[assignment.role.isin(["train", "validation"])]
    rows = table.column("snippet_id").to_pylist()
    vectors = table_to_embeddings(table, 1, 8)[:, 0, :]
    position = {snippet: index for index, snippet in enumerate(rows)}
    x = vectors[[position[s] for s in fitted.snippet_id]].astype(np.float64)
    labels = fitted.piece_id.map({name: i for i, name in enumerate(result["class_names"])}).to_numpy()
    reference = LogisticRegression(C=1.0 / (l2 * len(x)), class_weight="balanced", tol=1e-10, max_iter=5000).fit(
        x, labels
    )
    test = assignment[assignment.role == "test"]
    x_test = vectors[[position[s] for s in test.snippet_id]].astype(np.float64)
    expected = reference.predict_proba(x_test)
    scores = result["scores"]
    ours = np.exp(scores - scores.max(axis=1, keepdims=True))
    ours /= ours.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_settings_refuse_a_weighted_layer_and_empty_or_negative_grids():
    with pytest.raises(ValueError, match="weighted"):
        settings_from_config({"kind": "logistic", "layer": "weighted"})
    with pytest.raises(ValueError, match="l2_grid"):
        settings_from_config({"kind": "logistic", "l2_grid": [0.1, -1]})
    with pytest.raises(ValueError, match="no setting"):
        settings_from_config({"kind": "logistic", "epochs": 5})


def test_without_validation_snippets_it_says_what_to_do():
    table, embedder, assignment = clustered_dataset()
    with pytest.raises(ValueError, match="validation_fraction"):
        run_probe(table, embedder, assignment, LogisticSettings())
