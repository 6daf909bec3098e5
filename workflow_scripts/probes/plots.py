"""Matplotlib figures, written atomically as PNG."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow_scripts.plumbing.io_utils import atomic_path  # noqa: E402

LABELLED_CLASSES_MAX = 40


def _save(figure, destination) -> None:
    with atomic_path(destination) as temporary:
        # A fixed creation date keeps the PNG bytes reproducible.
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def plot_confusion(
    matrix: np.ndarray, class_names: list[str], destination, title: str, row_totals: np.ndarray | None = None
) -> None:
    """Row-normalised confusion matrix; rows are true pieces, columns predicted ones.

    ``row_totals`` gives each row's full test count when ``matrix`` is a sub-matrix,
    so a cell still reads as a share of all of the true piece's test snippets.
    """
    rows = matrix.sum(axis=1, keepdims=True) if row_totals is None else np.asarray(row_totals, dtype=float)[:, None]
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


def plot_note(destination, title: str, text: str) -> None:
    """A figure that is a sentence: what stands where a plot would, and why there is none."""
    figure, axis = plt.subplots(figsize=(8, 2.4))
    axis.axis("off")
    axis.text(0.0, 1.0, textwrap.fill(text, 110), va="top", ha="left", fontsize=8, transform=axis.transAxes)
    axis.set_title(title, fontsize=9, loc="left")
    _save(figure, destination)


def plot_not_run(destination, title: str, reason: str) -> None:
    plot_note(destination, f"not run: {title}", reason)


def has_curve(curve: pd.DataFrame) -> bool:
    """Whether training left a curve to draw: an iterative optimiser (Adam) records every
    epoch; full-batch L-BFGS records one result, which is a point, not a curve."""
    return len(curve) >= 2


def plot_curve(curve: pd.DataFrame, destination, title: str) -> None:
    """Loss and accuracy per epoch; for a single result, a sentence saying where training stopped."""
    if not has_curve(curve):
        last = curve.iloc[-1]
        plot_note(
            destination,
            title,
            f"No training curve: one result, after {int(last.step)} steps (for full-batch L-BFGS, function "
            f"evaluations): training loss {last.loss:.4f}, train top-1 {last.train_top1:.1%}.",
        )
        return
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    marker = "o" if len(curve) < 5 else None
    loss_axis.plot(curve.step, curve.loss, marker=marker)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    for column, style in (
        ("train_top1", "-"),
        ("test_top1", "-"),
        ("validation_top1", "-"),
        ("train_top5", ":"),
        ("test_top5", ":"),
        ("validation_top5", ":"),
    ):
        if column not in curve:
            continue
        accuracy_axis.plot(curve.step, curve[column], style, marker=marker, label=column.replace("_", " "))
    accuracy_axis.set_ylim(0, 1.02)
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("accuracy")
    accuracy_axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    _save(figure, destination)


def plot_per_class(per_class: pd.DataFrame, destination, title: str) -> None:
    figure, axis = plt.subplots(figsize=(6, 3.8))
    axis.hist(per_class.accuracy, bins=np.linspace(0, 1, 11), color="#4c72b0", edgecolor="white")
    axis.set_xlabel("test accuracy of the piece")
    axis.set_ylabel("pieces")
    axis.set_title(f"per-piece accuracy ({len(per_class)} pieces tested)\n{title}", fontsize=9)
    _save(figure, destination)


def plot_most_confused(matrix: np.ndarray, class_names: list[str], destination, title: str, count: int = 25) -> None:
    """The confusion matrix restricted to the pieces involved in the most confusions."""
    off_diagonal = matrix - np.diag(np.diag(matrix))
    involvement = off_diagonal.sum(axis=0) + off_diagonal.sum(axis=1)
    chosen = np.sort(np.argsort(-involvement, kind="stable")[:count])
    plot_confusion(
        matrix[np.ix_(chosen, chosen)],
        [class_names[i] for i in chosen],
        destination,
        f"{title} (the {len(chosen)} most-confused pieces)",
        row_totals=matrix.sum(axis=1)[chosen],
    )


def plot_distance_histograms(samples: dict[str, tuple[np.ndarray, np.ndarray]], destination, title: str) -> None:
    figure, axes = plt.subplots(1, len(samples), figsize=(5 * len(samples), 3.6))
    for axis, (metric, (same, different)) in zip(np.atleast_1d(axes), samples.items()):
        bins = np.linspace(min(same.min(), different.min()), max(same.max(), different.max()), 60)
        axis.hist(different, bins=bins, density=True, alpha=0.55, label=f"different piece ({len(different)} pairs)")
        axis.hist(same, bins=bins, density=True, alpha=0.55, label=f"same piece ({len(same)} pairs)")
        axis.set_xlabel(f"{metric} distance")
        axis.set_ylabel("density")
        axis.legend(fontsize=8)
    figure.suptitle(f"snippet distances: {title}", fontsize=9)
    _save(figure, destination)


def plot_representation_distances(
    samples: dict[str, tuple[np.ndarray, np.ndarray]], rows: list[dict], destination, title: str
) -> None:
    """Held-out same-piece vs different-piece cosine distances, one panel per representation."""
    auc = {row["representation"]: row["auc_cosine"] for row in rows}
    figure, axes = plt.subplots(1, len(samples), figsize=(3.6 * len(samples), 3.2), squeeze=False)
    for axis, (name, (same, different)) in zip(axes[0], samples.items()):
        largest = max(different.max() if len(different) else 0.0, same.max() if len(same) else 0.0)
        bins = np.linspace(0.0, max(largest, 1e-6), 50)
        axis.hist(different, bins=bins, density=True, alpha=0.55, label="different piece")
        axis.hist(same, bins=bins, density=True, alpha=0.55, label="same piece")
        axis.set_title(f"{name}: AUC {auc[name]:.3f}", fontsize=9)
        axis.set_xlabel("cosine distance")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"held-out pieces, before and after learned projections: {title}", fontsize=9)
    _save(figure, destination)


def plot_layer_curve(per_layer: pd.DataFrame, destination, title: str) -> None:
    layers = per_layer[per_layer.layer != "mean"]
    figure, axis = plt.subplots(figsize=(6, 3.6))
    x = layers.layer.astype(int)
    marker = "o"
    for column, label in (
        ("auc_cosine", "AUC same piece (cosine)"),
        ("auc_euclidean", "AUC same piece (Euclidean)"),
        ("nn_accuracy_cosine", "1-NN piece accuracy (cosine)"),
    ):
        axis.plot(x, layers[column], marker=marker, label=label)
    if (per_layer.layer == "mean").any():
        axis.axhline(
            per_layer.set_index("layer").loc["mean", "auc_cosine"],
            color="grey",
            linestyle=":",
            label="AUC, mean of layers",
        )
    axis.set_xlabel("layer (0 = feature projection)")
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=8)
    axis.set_title(f"geometry per layer: {title}", fontsize=9)
    _save(figure, destination)


def plot_tsne(points: pd.DataFrame, destination, title: str) -> None:
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    colours = plt.get_cmap("tab20")
    for index, (piece, group) in enumerate(points.groupby("piece_id", sort=True)):
        axis.scatter(group.x, group.y, s=22, color=colours(index % 20), label=piece)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(fontsize=7, ncol=2, loc="best")
    axis.set_title(f"t-SNE of snippets of {points.piece_id.nunique()} pieces: {title}", fontsize=9)
    _save(figure, destination)
