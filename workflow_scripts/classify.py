"""Classify stage: a probe on frozen embeddings, trained on train snippets, scored on test.

Probes:
- ``linear`` head ``nn.Linear(d, C)``, trained with the report's recipe (Adam, lr 1e-3,
  batch 256, 1000 epochs, no weight decay) or with full-batch L-BFGS;
- class weights as in the report, v_c = (1/n_c) / sum_j (1/n_j) * C (``class_weighting``);
- normalisation ``none``, ``standardize`` (train mean and std) or ``l2``;
- ``layer`` for layered embedders: an index, ``last`` or ``mean`` (of all layers).

Test data is used only for the final scores and the logged curve (as in the report);
nothing is selected on it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.metrics import inverse_frequency_weights, summarise_predictions, top_k_correct

NORMALIZATIONS = ("none", "standardize", "l2")
OPTIMIZERS = ("adam", "lbfgs")


@dataclass(frozen=True)
class ProbeSettings:
    head: str = "linear"
    optimizer: str = "adam"
    normalization: str = "none"
    class_weighting: bool = True
    layer: str | int = "mean"
    epochs: int = 1000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lbfgs_max_iter: int = 500
    seed: int = 0
    bootstrap_resamples: int = 1000

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> ProbeSettings:
        known = {key: value for key, value in settings.items() if key in cls.__dataclass_fields__}
        probe = cls(**known)
        if probe.normalization not in NORMALIZATIONS:
            raise ValueError(f"probe normalization '{probe.normalization}' is not one of {NORMALIZATIONS}")
        if probe.optimizer not in OPTIMIZERS:
            raise ValueError(f"probe optimizer '{probe.optimizer}' is not one of {OPTIMIZERS}")
        return probe


def select_layer(vectors: np.ndarray, layer: str | int) -> np.ndarray:
    """(n, layers, dim) -> (n, dim)."""
    if layer == "mean":
        return vectors.mean(axis=1)
    if layer == "last":
        return vectors[:, -1, :]
    index = int(layer)
    if not -vectors.shape[1] <= index < vectors.shape[1]:
        raise ValueError(f"probe layer {index} does not exist: the embedder has {vectors.shape[1]} layers (0..{vectors.shape[1] - 1})")
    return vectors[:, index, :]


def fit_normalization(train: np.ndarray, kind: str):
    """A function applying the normalisation, with statistics from ``train`` only."""
    if kind == "none":
        return lambda features: features
    if kind == "l2":
        return lambda features: features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return lambda features: (features - mean) / std


@dataclass
class ProbeData:
    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    test_snippet_ids: list[str]
    class_names: list[str]
    counts: dict[str, int]


def assemble(snippet_ids: list[str], piece_ids: list[str], features: np.ndarray, assignment: pd.DataFrame) -> ProbeData:
    """Join features with the split; classes are the pieces that have training snippets."""
    frame = pd.DataFrame({"snippet_id": snippet_ids, "piece_id": piece_ids, "row": np.arange(len(snippet_ids))})
    joined = frame.merge(assignment[["snippet_id", "role"]], on="snippet_id", how="inner", validate="one_to_one")
    train = joined[joined.role == "train"]
    test = joined[joined.role == "test"]
    class_names = sorted(train.piece_id.unique())
    index = {name: i for i, name in enumerate(class_names)}
    unseen = ~test.piece_id.isin(index)
    if unseen.all() and len(test):
        raise ValueError(
            "no test snippet belongs to a piece seen in training: this split holds out whole pieces, "
            "which a closed-set classifier cannot name. Evaluate it with retrieval instead."
        )
    test = test[~unseen]
    return ProbeData(
        train_features=features[train.row.values],
        train_labels=train.piece_id.map(index).values.astype(np.int64),
        test_features=features[test.row.values],
        test_labels=test.piece_id.map(index).values.astype(np.int64),
        test_snippet_ids=test.snippet_id.tolist(),
        class_names=class_names,
        counts={
            "train_snippets": int(len(train)),
            "test_snippets": int(len(test)),
            "test_snippets_of_unseen_pieces": int(unseen.sum()),
            "dropped_overlap_snippets": int((joined.role == "dropped_overlap").sum()),
            "classes": len(class_names),
        },
    )


def _accuracy_pair(model, features, labels) -> tuple[float, float]:
    import torch

    if len(labels) == 0:
        return float("nan"), float("nan")
    with torch.no_grad():
        scores = model(features).numpy()
    labels = labels.numpy()
    return float(top_k_correct(labels, scores, 1).mean()), float(top_k_correct(labels, scores, 5).mean())


def train_linear(data: ProbeData, probe: ProbeSettings, logger=None):
    """Train the head; returns (test scores, curve rows, train seconds)."""
    import torch

    torch.manual_seed(probe.seed)
    x_train = torch.as_tensor(data.train_features, dtype=torch.float32)
    y_train = torch.as_tensor(data.train_labels)
    x_test = torch.as_tensor(data.test_features, dtype=torch.float32)
    y_test = torch.as_tensor(data.test_labels)
    num_classes = len(data.class_names)
    model = torch.nn.Linear(x_train.shape[1], num_classes)
    weights = (
        torch.as_tensor(inverse_frequency_weights(data.train_labels, num_classes), dtype=torch.float32)
        if probe.class_weighting
        else None
    )
    loss_function = torch.nn.CrossEntropyLoss(weight=weights)
    curve: list[dict[str, float]] = []

    def record(step: int, loss: float) -> None:
        train_top1, train_top5 = _accuracy_pair(model, x_train, y_train)
        test_top1, test_top5 = _accuracy_pair(model, x_test, y_test)
        curve.append({"step": step, "loss": loss, "train_top1": train_top1, "train_top5": train_top5,
                      "test_top1": test_top1, "test_top5": test_top5})

    started = time.perf_counter()
    if probe.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=probe.learning_rate, weight_decay=probe.weight_decay)
        generator = torch.Generator().manual_seed(probe.seed)
        for epoch in range(1, probe.epochs + 1):
            order = torch.randperm(len(y_train), generator=generator)
            total = 0.0
            for batch in order.split(probe.batch_size):
                optimizer.zero_grad()
                loss = loss_function(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.detach().item() * len(batch)
            record(epoch, total / max(len(y_train), 1))
            if logger and (epoch % 100 == 0 or epoch == probe.epochs):
                logger.info("epoch %d/%d: %s", epoch, probe.epochs, curve[-1])
    else:
        optimizer = torch.optim.LBFGS(
            model.parameters(), lr=1.0, max_iter=probe.lbfgs_max_iter, history_size=20,
            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9,
        )
        iteration = 0

        def closure():
            nonlocal iteration
            optimizer.zero_grad()
            loss = loss_function(model(x_train), y_train)
            # L2 on the weights only, as in a regularised logistic regression.
            loss = loss + 0.5 * probe.weight_decay * model.weight.pow(2).sum()
            loss.backward()
            iteration += 1
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            final = float(loss_function(model(x_train), y_train))
        record(iteration, final)
        if logger:
            logger.info("L-BFGS stopped after %d evaluations: %s", iteration, curve[-1])
    seconds = time.perf_counter() - started
    with torch.no_grad():
        scores = model(x_test).numpy()
    return scores, curve, seconds


def run_probe(dataset_table, embedder: dict[str, Any], assignment: pd.DataFrame, probe: ProbeSettings, logger=None) -> dict[str, Any]:
    from workflow_scripts.embeddings_table import table_to_embeddings

    vectors = table_to_embeddings(dataset_table, embedder["layers"], embedder["dim"])
    features = select_layer(vectors, probe.layer)
    data = assemble(
        dataset_table.column("snippet_id").to_pylist(), dataset_table.column("piece_id").to_pylist(), features, assignment
    )
    normalize = fit_normalization(data.train_features, probe.normalization)
    data.train_features = normalize(data.train_features)
    data.test_features = normalize(data.test_features)
    scores, curve, seconds = train_linear(data, probe, logger)
    metrics, per_class = summarise_predictions(
        data.test_labels, scores, data.class_names, probe.bootstrap_resamples, probe.seed
    )
    metrics.update(data.counts)
    metrics["train_top1"] = curve[-1]["train_top1"]
    metrics["train_seconds"] = round(seconds, 3)
    metrics["probe"] = asdict(probe)
    predictions = _predictions_frame(data, scores)
    return {"metrics": metrics, "per_class": per_class, "predictions": predictions, "curve": pd.DataFrame(curve),
            "class_names": data.class_names, "labels": data.test_labels, "scores": scores}


def _predictions_frame(data: ProbeData, scores: np.ndarray) -> pd.DataFrame:
    names = np.array(data.class_names)
    top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return pd.DataFrame(
        {
            "snippet_id": data.test_snippet_ids,
            "true_piece": names[data.test_labels],
            "predicted_piece": names[scores.argmax(axis=1)],
            "top5": [list(names[row]) for row in top5],
            "correct": scores.argmax(axis=1) == data.test_labels,
        }
    )


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from workflow_scripts.io_utils import read_provenance, write_json_atomic, write_parquet_atomic, write_tsv_atomic
    from workflow_scripts.job_log import job_logger
    from workflow_scripts.metrics import confusion
    from workflow_scripts.plots import plot_confusion, plot_curve
    from workflow_scripts.provenance import provenance_record

    torch.set_num_threads(snakemake.threads)
    logger = job_logger("classify", snakemake.log[0])
    probe = ProbeSettings.from_config(snakemake.params.probe)
    dataset_provenance = read_provenance(snakemake.input.dataset)
    result = run_probe(
        pq.read_table(snakemake.input.dataset),
        dataset_provenance["embedder"],
        pq.read_table(snakemake.input.assignment).to_pandas(),
        probe,
        logger,
    )
    provenance = provenance_record(
        "classify",
        asdict(probe),
        embedder=dataset_provenance["embedder"],
        split=read_provenance(snakemake.input.assignment)["settings"],
        wildcards=dict(snakemake.wildcards),
    )
    metrics = {**result["metrics"], "provenance": provenance}
    logger.info("top-1 %.4f top-5 %.4f (%s)", metrics["top1"], metrics["top5"], dict(snakemake.wildcards))
    matrix = confusion(result["labels"], result["scores"].argmax(axis=1), len(result["class_names"]))
    confusion_frame = pd.DataFrame(matrix, index=result["class_names"], columns=result["class_names"])
    confusion_frame.index.name = "true_piece"
    write_json_atomic(snakemake.output.metrics, metrics)
    write_tsv_atomic(result["per_class"], snakemake.output.per_class)
    write_parquet_atomic(pa.Table.from_pandas(result["predictions"], preserve_index=False), snakemake.output.predictions, provenance)
    write_tsv_atomic(confusion_frame.reset_index(), snakemake.output.confusion)
    write_tsv_atomic(result["curve"], snakemake.output.curve)
    title = " / ".join(f"{k}={v}" for k, v in dict(snakemake.wildcards).items())
    plot_confusion(matrix, result["class_names"], snakemake.output.confusion_png, title)
    plot_curve(result["curve"], snakemake.output.curve_png, title)

