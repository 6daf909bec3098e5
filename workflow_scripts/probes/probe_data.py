"""What every probe kind trains and is scored on: a split's snippets joined with their
vectors, one layer chosen, normalised with training statistics only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workflow_scripts.plumbing.roles import TRAINING_ROLES


@dataclass
class ProbeData:
    features: dict[str, np.ndarray]  # role (train, validation, test) -> (n, layers, dim)
    labels: dict[str, np.ndarray]
    test_snippet_ids: list[str]
    class_names: list[str]
    counts: dict[str, int]

    def flat(self, role: str) -> np.ndarray:
        """(n, layers * dim): the vectors of one role for kinds that read one layer as a plain vector."""
        values = self.features[role]
        return values.reshape(len(values), -1)


def fit_normalization(train: np.ndarray, kind: str):
    """A function applying the normalisation along the last axis, with statistics from ``train`` only."""
    if kind == "none":
        return lambda features: features
    if kind == "l2":
        return lambda features: features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return lambda features: (features - mean) / std


def assemble(snippet_ids: list[str], piece_ids: list[str], features: np.ndarray, assignment: pd.DataFrame) -> ProbeData:
    """Join features with the split; classes are the pieces with training or validation snippets."""
    frame = pd.DataFrame({"snippet_id": snippet_ids, "piece_id": piece_ids, "row": np.arange(len(snippet_ids))})
    joined = frame.merge(assignment[["snippet_id", "role"]], on="snippet_id", how="inner", validate="one_to_one")
    seen = joined[joined.role.isin(TRAINING_ROLES)]
    class_names = sorted(seen.piece_id.unique())
    index = {name: i for i, name in enumerate(class_names)}
    test = joined[joined.role == "test"]
    unseen = ~test.piece_id.isin(index)
    if unseen.all() and len(test):
        raise ValueError(
            "no test snippet belongs to a piece seen in training: this split holds out whole pieces, "
            "which a closed-set classifier cannot name. Evaluate it with retrieval instead."
        )
    parts = {
        "train": joined[joined.role == "train"],
        "validation": joined[joined.role == "validation"],
        "test": test[~unseen],
    }
    return ProbeData(
        features={role: features[part.row.values] for role, part in parts.items()},
        labels={role: part.piece_id.map(index).values.astype(np.int64) for role, part in parts.items()},
        test_snippet_ids=parts["test"].snippet_id.tolist(),
        class_names=class_names,
        counts={
            "train_snippets": int(len(parts["train"])),
            "validation_snippets": int(len(parts["validation"])),
            "test_snippets": int(len(parts["test"])),
            "test_snippets_of_unseen_pieces": int(unseen.sum()),
            "dropped_overlap_snippets": int((joined.role == "dropped_overlap").sum()),
            "classes": len(class_names),
        },
    )


def train_and_validation(data: ProbeData) -> tuple[np.ndarray, np.ndarray]:
    """Both training roles together, as flat vectors (``flat``): what a kind refits on once
    validation has chosen its setting."""
    return (
        np.concatenate([data.flat("train"), data.flat("validation")]),
        np.concatenate([data.labels["train"], data.labels["validation"]]),
    )
