"""Matplotlib figures, written atomically as PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow_scripts.io_utils import atomic_path  # noqa: E402

LABELLED_CLASSES_MAX = 40


def _save(figure, destination) -> None:
    with atomic_path(destination) as temporary:
        # A fixed creation date keeps the PNG bytes reproducible.
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, class_names: list[str], destination, title: str) -> None:
    """Row-normalised confusion matrix; rows are true pieces, columns predicted ones."""
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = min(14.0, 4.0 + 0.12 * len(class_names))
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(normalised, cmap="magma_r", vmin=0, vmax=1, interpolation="nearest")
    if len(class_names) <= LABELLED_CLASSES_MAX:
        axis.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        axis.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axis.set_xlabel("predicted piece")
    axis.set_ylabel("true piece")
    axis.set_title(f"confusion (row-normalised), {len(class_names)} pieces\n{title}", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true piece's test snippets")
    _save(figure, destination)


def plot_curve(curve: pd.DataFrame, destination, title: str) -> None:
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    marker = "o" if len(curve) < 5 else None
    loss_axis.plot(curve.step, curve.loss, marker=marker)
    loss_axis.set_xlabel("epoch / iteration")
    loss_axis.set_ylabel("training loss")
    for column, style in (("train_top1", "-"), ("test_top1", "-"), ("train_top5", ":"), ("test_top5", ":")):
        accuracy_axis.plot(curve.step, curve[column], style, marker=marker, label=column.replace("_", " "))
    accuracy_axis.set_ylim(0, 1.02)
    accuracy_axis.set_xlabel("epoch / iteration")
    accuracy_axis.set_ylabel("accuracy")
    accuracy_axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    _save(figure, destination)
