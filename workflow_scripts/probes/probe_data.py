"""What every probe kind trains and is scored on: a split's snippets joined with their
vectors, one layer chosen, normalised with training statistics only."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workflow_scripts.plumbing.roles import TRAINING_ROLES, overlaps


@dataclass
class ProbeData:
    features: dict[str, np.ndarray]  # role (train, validation, test) -> (n, layers, dim)
    labels: dict[str, np.ndarray]
    test_snippet_ids: list[str]
    class_names: list[str]
    counts: dict[str, int]
    # role -> (n, 2) first and stop measure of each snippet; None when the assignment carries
    # none (one written before splits recorded them): then no selection folds can be carved.
    windows: dict[str, np.ndarray] | None = None

    def flat(self, role: str) -> np.ndarray:
        """(n, layers * dim): the vectors of one role for kinds that read one layer as a plain vector."""
        values = self.features[role]
        return values.reshape(len(values), int(np.prod(values.shape[1:])))


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
    has_windows = {"first_measure", "stop_measure"} <= set(assignment.columns)
    columns = ["snippet_id", "role"] + (["first_measure", "stop_measure"] if has_windows else [])
    joined = frame.merge(assignment[columns], on="snippet_id", how="inner", validate="one_to_one")
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
        windows=(
            {role: part[["first_measure", "stop_measure"]].to_numpy(np.int64) for role, part in parts.items()}
            if has_windows
            else None
        ),
    )


def train_and_validation(data: ProbeData) -> tuple[np.ndarray, np.ndarray]:
    """Both training roles together, as flat vectors (``flat``): what a kind refits on once
    validation has chosen its setting."""
    return (
        np.concatenate([data.flat("train"), data.flat("validation")]),
        np.concatenate([data.labels["train"], data.labels["validation"]]),
    )


def selection_folds(data: ProbeData, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (fit rows, held rows) pairs over the rows of ``train_and_validation``, for
    choosing a setting on every training snippet rather than on the small validation role.

    The unit is a piece's measure window, so a window heard in several renderings (a
    transfer's training variants) is held out in all of them at once. Each piece cuts its
    windows, in measure order, into ``folds`` contiguous runs, one per fold from a seeded
    offset, so its snippets spread over the folds and a piece's draw does not depend on the
    others. Runs rather than a round-robin deal because overlapping windows (hop < window)
    would otherwise put every held window's neighbours in other folds' fits, to be dropped.
    The split's overlap guard holds inside every fold: a fit row that shares a measure with a
    held row of its piece is left out of that fold's fit.
    """
    if data.windows is None:
        raise ValueError(
            "the split's assignment records no measure windows (it was written by an earlier version): "
            "rerun the split stage, or set the probe's selection_folds to 0 to choose on the validation role"
        )
    labels = np.concatenate([data.labels["train"], data.labels["validation"]])
    windows = np.concatenate([data.windows["train"], data.windows["validation"]])
    fold_of = np.empty(len(labels), np.int64)
    piece_rows = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    for rows in piece_rows:
        units, unit_of_row = np.unique(windows[rows], axis=0, return_inverse=True)
        name = data.class_names[labels[rows[0]]]
        offset = np.random.default_rng([seed, zlib.crc32(name.encode())]).integers(folds)
        runs = np.arange(len(units)) * folds // len(units)
        fold_of[rows] = (runs + offset)[unit_of_row.reshape(-1)] % folds
    pairs = []
    for fold in range(folds):
        held = fold_of == fold
        fit = ~held
        for rows in piece_rows:
            held_windows = windows[rows[held[rows]]]
            if len(held_windows) == 0:
                continue
            first, stop = windows[rows, 0][:, None], windows[rows, 1][:, None]
            shares = overlaps(first, stop, held_windows[None, :, 0], held_windows[None, :, 1]).any(axis=1)
            fit[rows[shares & ~held[rows]]] = False
        pairs.append((np.flatnonzero(fit), np.flatnonzero(held)))
    return pairs
