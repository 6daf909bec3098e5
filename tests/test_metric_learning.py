"""The metric-learning head: its loss on a worked example, its batches, and a case where
the answer is known (piece identity lives in a small subspace that raw cosine cannot see)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workflow_scripts.probes.metric_learning import (
    HeadSettings,
    balanced_batches,
    mean_average_precision,
    supervised_contrastive_loss,
)
from workflow_scripts.stages.retrieval import cosine_similarities, evaluate_retrieval, per_query_metrics


def test_supervised_contrastive_loss_worked_example():
    # Three unit vectors: a and b (piece 0) at 60 degrees, c (piece 1) opposite a.
    # With t = 1, anchor a: logits to b, c are cos 60 = 0.5 and cos 180 = -1;
    # loss_a = -log(e^0.5 / (e^0.5 + e^-1)); anchor b: cos(b, c) = cos 120 = -0.5,
    # loss_b = -log(e^0.5 / (e^0.5 + e^-0.5)); c has no positive and is not an anchor.
    a = [1.0, 0.0]
    b = [0.5, math.sqrt(3) / 2]
    c = [-1.0, 0.0]
    loss = supervised_contrastive_loss(torch.tensor([a, b, c]), torch.tensor([0, 0, 1]), temperature=1.0)
    loss_a = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(-1.0)))
    loss_b = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(-0.5)))
    assert float(loss) == pytest.approx((loss_a + loss_b) / 2, abs=1e-6)


def test_a_batch_without_positives_is_refused():
    with pytest.raises(ValueError, match="positive"):
        supervised_contrastive_loss(torch.eye(3), torch.tensor([0, 1, 2]), temperature=0.1)


def test_vectorised_map_equals_the_reference_retrieval_code():
    rng = np.random.default_rng(3)
    vectors, labels = rng.normal(size=(40, 6)), rng.integers(0, 8, size=40)
    reference = per_query_metrics(cosine_similarities(vectors), labels).average_precision.mean()
    assert mean_average_precision(vectors, labels) == pytest.approx(reference, abs=1e-12)


def test_balanced_batches_cover_each_usable_piece_once():
    labels = np.repeat(np.arange(10), [5, 5, 5, 5, 5, 5, 5, 3, 2, 1])  # piece 9 has one snippet
    batches = balanced_batches(labels, pieces_per_batch=4, per_piece=3, rng=np.random.default_rng(0))
    pieces_seen = np.concatenate([np.unique(labels[batch]) for batch in batches])
    assert sorted(pieces_seen) == list(range(9))
    for batch in batches:
        counts = np.bincount(labels[batch])
        assert set(counts[counts > 0]) <= {2, 3} and len(set(batch)) == len(batch)


def synthetic_corpus(seed: int = 0):
    """Piece identity in 8 dimensions; 60 dimensions of loud nuisance shared by no piece."""
    rng = np.random.default_rng(seed)
    pieces, vectors, roles = [], [], []
    for piece in range(110):
        role = "train" if piece < 60 else "validation" if piece < 80 else "test"
        centre = rng.normal(size=8) * 3.0
        for _ in range(5):
            signal = centre + rng.normal(scale=0.3, size=8)
            nuisance = rng.normal(scale=4.0, size=60)
            vectors.append(np.concatenate([signal, nuisance]))
            pieces.append(f"p{piece:03d}")
            roles.append(role)
    return np.array(vectors), np.array(pieces), np.array(roles)


def test_the_head_learns_what_raw_cosine_misses_on_unseen_pieces():
    vectors, pieces, roles = synthetic_corpus()
    settings = HeadSettings(hidden=0, dim=8, epochs=150, patience=40, pieces_per_batch=20, learning_rate=1e-2)
    _, summary, figures = evaluate_retrieval(vectors, pieces, roles, 50, 0, settings)
    by_name = {row["representation"]: row for row in summary["results"]}
    assert by_name["raw"]["map"] < 0.35
    assert by_name["metric_head"]["map"] > 0.85
    assert by_name["metric_head"]["auc_cosine"] > by_name["raw"]["auc_cosine"] + 0.2
    head = summary["metric_head"]
    assert (
        head["selected_on"] == "validation pieces" and head["training_pieces"] == 60 and head["validation_pieces"] == 20
    )
    assert 1 <= head["selected_epoch"] <= head["epochs_run"]
    assert len(figures["head_history"]) == head["epochs_run"]


def test_the_head_never_sees_test_pieces():
    vectors, pieces, roles = synthetic_corpus(1)
    settings = HeadSettings(hidden=0, dim=8, epochs=20, pieces_per_batch=20)
    _, first, _ = evaluate_retrieval(vectors, pieces, roles, 20, 0, settings)
    changed = vectors.copy()
    changed[roles == "test"] = np.random.default_rng(5).permutation(changed[roles == "test"])
    # Shuffling the test rows changes test metrics but not the head's training or selection.
    _, second, _ = evaluate_retrieval(changed, pieces, roles, 20, 0, settings)
    assert first["metric_head"]["validation_map"] == second["metric_head"]["validation_map"]
    assert first["metric_head"]["selected_epoch"] == second["metric_head"]["selected_epoch"]
