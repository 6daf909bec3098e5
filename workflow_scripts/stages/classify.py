"""Classify stage: a probe on frozen embeddings, trained on training snippets, scored on test.

Probes:
- heads: ``linear`` (``nn.Linear(d, C)``) or ``mlp`` (d -> ``hidden_units`` -> C, ReLU,
  dropout), as the report proposes;
- optimisers: the report's recipe (Adam, lr 1e-3, batch 256, 1000 epochs, no weight
  decay) or full-batch L-BFGS;
- class weights as in the report, v_c = (1/n_c) / sum_j (1/n_j) * C (``class_weighting``);
- normalisation ``none``, ``standardize`` (training statistics) or ``l2``;
- ``layer`` for layered embedders: an index, ``last``, ``mean`` (of all layers) or
  ``weighted`` (a learned softmax-weighted sum of layers, trained with the head).

Model selection: with ``early_stopping`` the head trains on the ``train`` snippets only and
keeps the epoch with the best validation top-1 (stopping after ``patience`` epochs without
improvement); the test set is then scored once. Without it (the report's fixed recipe)
the head trains on train and validation together for the fixed number of epochs, and
the per-epoch test curve is logged as in the report; nothing is selected on it.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.plumbing.job_log import Progress
from workflow_scripts.plumbing.roles import TRAINING_ROLES
from workflow_scripts.probes.layers import select_layer
from workflow_scripts.probes.metrics import (
    group_accuracy,
    inverse_frequency_weights,
    summarise_predictions,
    top_k_correct,
)
from workflow_scripts.probes.preconditions import NOT_RUN, RAN, failures_of, refusal

NORMALIZATIONS = ("none", "standardize", "l2")
OPTIMIZERS = ("adam", "lbfgs")
HEADS = ("linear", "mlp")
# L-BFGS trains and scores on one thread whatever the job's thread count: a matrix product
# sums in another order on two threads, and the full-batch line search carries the
# difference into the result (see training_dtype). On one thread and in float64 the result
# is the same bits however many cores the rule gets (1.5 s for the spectral piano probe).
LBFGS_THREADS = 1


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
    hidden_units: int = 512
    dropout: float = 0.5
    early_stopping: bool = False
    patience: int = 100
    seed: int = 0
    bootstrap_resamples: int = 1000

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> ProbeSettings:
        known = {key: value for key, value in settings.items() if key in cls.__dataclass_fields__}
        probe = cls(**known)
        for field, allowed in (("normalization", NORMALIZATIONS), ("optimizer", OPTIMIZERS), ("head", HEADS)):
            if getattr(probe, field) not in allowed:
                raise ValueError(f"probe {field} '{getattr(probe, field)}' is not one of {allowed}")
        if probe.optimizer == "lbfgs" and (probe.head != "linear" or probe.early_stopping or probe.layer == "weighted"):
            raise ValueError(
                "lbfgs trains a linear head on fixed features only: use adam for mlp, weighted layers or early stopping"
            )
        return probe


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


@dataclass
class ProbeData:
    features: dict[str, np.ndarray]  # role -> (n, layers, dim)
    labels: dict[str, np.ndarray]
    test_snippet_ids: list[str]
    class_names: list[str]
    counts: dict[str, int]


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


def build_model(layers: int, dim: int, num_classes: int, probe: ProbeSettings):
    import torch
    from torch import nn

    class LayerMix(nn.Module):
        """Softmax-weighted sum over layers (one weight per layer, learned with the head)."""

        def __init__(self, count: int):
            super().__init__()
            self.logits = nn.Parameter(torch.zeros(count))

        def forward(self, features):
            return torch.einsum("l,bld->bd", torch.softmax(self.logits, dim=0), features)

    mix = LayerMix(layers) if layers > 1 else nn.Flatten(start_dim=1)
    if probe.head == "linear":
        head = nn.Linear(dim, num_classes)
    else:
        head = nn.Sequential(
            nn.Linear(dim, probe.hidden_units),
            nn.ReLU(),
            nn.Dropout(probe.dropout),
            nn.Linear(probe.hidden_units, num_classes),
        )
    return nn.Sequential(mix, head)


def _scores(model, features):
    import torch

    model.eval()
    with torch.no_grad():
        scores = model(features).numpy()
    model.train()
    return scores


def _accuracy_pair(model, features, labels) -> tuple[float, float]:
    if len(labels) == 0:
        return float("nan"), float("nan")
    scores = _scores(model, features)
    labels = labels.numpy()
    return float(top_k_correct(labels, scores, 1).mean()), float(top_k_correct(labels, scores, 5).mean())


def training_dtype(probe: ProbeSettings):
    """float64 for L-BFGS, float32 for Adam.

    Full-batch L-BFGS in float32 amplifies rounding: the order in which a matrix product sums
    changes with torch's thread count and the CPU's vector width (AVX2, AVX-512), and 50
    iterations of line search turn that into test scores up to 0.9 apart and one test snippet
    more or less (linear_lbfgs_std on the spectral piano data: 89, 90 or 91 of 434 correct).
    In float64 the scores stay within 1e-10 of each other, far below the closest call between
    two pieces (6e-4). Adam's minibatch noise dwarfs rounding, so it keeps float32's speed.
    """
    import torch

    return torch.float64 if probe.optimizer == "lbfgs" else torch.float32


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block on ``count`` intra-op threads, then give the caller back its own count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_probe(data: ProbeData, probe: ProbeSettings, logger=None):
    """Train the head; returns (test scores, curve rows, train seconds, chosen step)."""
    import torch

    torch.manual_seed(probe.seed)
    dtype = training_dtype(probe)
    tensors = {role: torch.as_tensor(values, dtype=dtype) for role, values in data.features.items()}
    labels = {role: torch.as_tensor(values) for role, values in data.labels.items()}
    if not probe.early_stopping:  # the fixed recipe trains on everything that is not test
        tensors["train"] = torch.cat([tensors["train"], tensors["validation"]])
        labels["train"] = torch.cat([labels["train"], labels["validation"]])
    if len(labels["train"]) == 0:
        raise ValueError("no training snippets: check the split's roles")
    if probe.early_stopping and len(labels["validation"]) == 0:
        raise ValueError(
            "the probe selects its epoch on validation (early_stopping: true) but the split has no validation "
            "snippets (splits.validation_fraction is 0?): give the split a validation share or set "
            "early_stopping: false"
        )
    num_classes = len(data.class_names)
    _, layers, dim = tensors["train"].shape
    model = build_model(layers, dim, num_classes, probe).to(dtype)
    weights = (
        torch.as_tensor(inverse_frequency_weights(labels["train"].numpy(), num_classes), dtype=dtype)
        if probe.class_weighting
        else None
    )
    loss_function = torch.nn.CrossEntropyLoss(weight=weights)
    monitored = "validation" if probe.early_stopping else "test"
    curve: list[dict[str, float]] = []

    def record(step: int, loss: float) -> None:
        train_top1, train_top5 = _accuracy_pair(model, tensors["train"], labels["train"])
        top1, top5 = _accuracy_pair(model, tensors[monitored], labels[monitored])
        curve.append(
            {
                "step": step,
                "loss": loss,
                "train_top1": train_top1,
                "train_top5": train_top5,
                f"{monitored}_top1": top1,
                f"{monitored}_top5": top5,
            }
        )

    started = time.perf_counter()
    if probe.optimizer == "adam":
        chosen_step = _train_adam(
            model, tensors["train"], labels["train"], loss_function, probe, record, curve, monitored, logger
        )
        seconds = time.perf_counter() - started
        return _scores(model, tensors["test"]), curve, seconds, chosen_step, model
    with torch_threads(LBFGS_THREADS):
        chosen_step = _train_lbfgs(model, tensors["train"], labels["train"], loss_function, probe, record, logger)
        seconds = time.perf_counter() - started
        return _scores(model, tensors["test"]), curve, seconds, chosen_step, model


def _curve_text(point: dict[str, float]) -> str:
    return ", ".join(
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}" for name, value in point.items()
    )


def _train_adam(model, x_train, y_train, loss_function, probe, record, curve, monitored, logger) -> int:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=probe.learning_rate, weight_decay=probe.weight_decay)
    generator = torch.Generator().manual_seed(probe.seed)
    best = (-1.0, 0)
    best_state = None
    progress = Progress(probe.epochs, "epoch")
    for epoch in range(1, probe.epochs + 1):
        order = torch.randperm(len(y_train), generator=generator)
        total = 0.0
        for batch in order.split(probe.batch_size):
            optimizer.zero_grad()
            loss = loss_function(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += loss.detach().item() * len(batch)
        record(epoch, total / len(y_train))
        if logger and (epoch % 100 == 0 or epoch == probe.epochs):
            logger.info("%s %s", progress(epoch), _curve_text(curve[-1]))
        if probe.early_stopping:
            score = curve[-1][f"{monitored}_top1"]
            if score > best[0]:
                best, best_state = (score, epoch), copy.deepcopy(model.state_dict())
            elif epoch - best[1] >= probe.patience:
                if logger:
                    logger.info("early stop at epoch %d; best validation top-1 %.4f at epoch %d", epoch, *best)
                break
    if probe.early_stopping and best_state is not None:
        model.load_state_dict(best_state)
        return best[1]
    return probe.epochs


def _train_lbfgs(model, x_train, y_train, loss_function, probe, record, logger) -> int:
    import torch

    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=probe.lbfgs_max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )
    head = model[1]
    evaluations = 0

    def closure():
        nonlocal evaluations
        optimizer.zero_grad()
        # L2 on the weights only, as in a regularised logistic regression.
        loss = loss_function(model(x_train), y_train) + 0.5 * probe.weight_decay * head.weight.pow(2).sum()
        loss.backward()
        evaluations += 1
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = float(loss_function(model(x_train), y_train))
    record(evaluations, final)
    if logger:
        logger.info("L-BFGS stopped after %d evaluations", evaluations)
    return evaluations


def run_probe(
    dataset_table,
    embedder: dict[str, Any],
    assignment: pd.DataFrame,
    probe: ProbeSettings,
    groups: pd.DataFrame | None = None,
    logger=None,
) -> dict[str, Any]:
    from workflow_scripts.plumbing.embeddings_table import table_to_embeddings

    vectors = select_layer(table_to_embeddings(dataset_table, embedder["layers"], embedder["dim"]), probe.layer)
    data = assemble(
        dataset_table.column("snippet_id").to_pylist(),
        dataset_table.column("piece_id").to_pylist(),
        vectors,
        assignment,
    )
    normalize = fit_normalization(data.features["train"], probe.normalization)
    data.features = {role: normalize(values) for role, values in data.features.items()}
    scores, curve, seconds, chosen_step, model = train_probe(data, probe, logger)
    metrics, per_class = summarise_predictions(
        data.labels["test"], scores, data.class_names, probe.bootstrap_resamples, probe.seed
    )
    if groups is not None:
        predicted = np.array(data.class_names)[scores.argmax(axis=1)]
        true = np.array(data.class_names)[data.labels["test"]]
        for column in ("music_group", "tune_group"):
            metrics[f"top1_{column}"] = group_accuracy(true, predicted, groups.set_index("piece_id")[column].to_dict())
    metrics.update(data.counts)
    metrics["train_top1"] = curve[-1]["train_top1"]
    metrics["train_seconds"] = round(seconds, 3)
    metrics["selected_step"] = chosen_step
    if probe.layer == "weighted":
        import torch

        metrics["layer_weights"] = torch.softmax(model[0].logits.detach(), dim=0).tolist()
    metrics["probe"] = asdict(probe)
    return {
        "metrics": metrics,
        "per_class": per_class,
        "predictions": _predictions_frame(data, scores),
        "curve": pd.DataFrame(curve),
        "class_names": data.class_names,
        "labels": data.labels["test"],
        "scores": scores,
    }


def leak_labels(split_settings: dict[str, Any]) -> dict[str, Any]:
    """What metrics.json says about the split: whether its guard was on, and so whether the figures are leaky."""
    from workflow_scripts.plumbing.roles import is_leaky

    return {"overlap_guard": bool(split_settings.get("overlap_guard", True)), "leaky": is_leaky(split_settings)}


def _predictions_frame(data: ProbeData, scores: np.ndarray) -> pd.DataFrame:
    names = np.array(data.class_names)
    top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return pd.DataFrame(
        {
            "snippet_id": data.test_snippet_ids,
            "true_piece": names[data.labels["test"]],
            "predicted_piece": names[scores.argmax(axis=1)],
            "top5": [list(names[row]) for row in top5],
            "correct": scores.argmax(axis=1) == data.labels["test"],
        }
    )


def probe_uses(probe: ProbeSettings) -> list[str]:
    """The preconditions a probe needs (workflow_scripts/probes/preconditions.py)."""
    return ["probes", "early_stopping"] if probe.early_stopping else ["probes"]


def not_run_metrics(probe: ProbeSettings, reason: str, failures: list, counts: dict[str, int]) -> dict[str, Any]:
    """metrics.json of a probe its split's preconditions refused: the reason and the counts, no figures."""
    return {
        "status": NOT_RUN,
        "reason": reason,
        "failed_preconditions": [asdict(failure) for failure in failures],
        "train_snippets": counts["train_snippets"],
        "validation_snippets": counts["validation_snippets"],
        "test_snippets": counts["test_snippets"],
        "dropped_overlap_snippets": counts["dropped_overlap_snippets"],
        "classes": counts["training_pieces"],
        "probe": asdict(probe),
    }


def write_not_run(snakemake, metrics: dict[str, Any], title: str) -> None:  # pragma: no cover - the Snakemake edge
    """Every output of the rule, empty but for the reason: the DAG goes on to the report, which says why."""
    import pyarrow as pa

    from workflow_scripts.plumbing.io_utils import write_json_atomic, write_parquet_atomic, write_tsv_atomic
    from workflow_scripts.probes.plots import plot_not_run

    write_json_atomic(snakemake.output.metrics, metrics)
    write_tsv_atomic(pd.DataFrame(columns=["class", "support", "correct", "accuracy"]), snakemake.output.per_class)
    schema = pa.schema(
        [
            ("snippet_id", pa.string()),
            ("true_piece", pa.string()),
            ("predicted_piece", pa.string()),
            ("top5", pa.list_(pa.string())),
            ("correct", pa.bool_()),
        ]
    )
    write_parquet_atomic(schema.empty_table(), snakemake.output.predictions, metrics["provenance"])
    write_tsv_atomic(pd.DataFrame(columns=["true_piece"]), snakemake.output.confusion)
    write_tsv_atomic(pd.DataFrame(columns=["step", "loss"]), snakemake.output.curve)
    for figure in ("confusion_png", "curve_png", "per_class_png"):
        plot_not_run(getattr(snakemake.output, figure), title, metrics["reason"])


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import json
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import (
        read_provenance,
        write_json_atomic,
        write_parquet_atomic,
        write_tsv_atomic,
    )
    from workflow_scripts.plumbing.job_log import job_logger
    from workflow_scripts.plumbing.provenance import provenance_record

    logger = job_logger("classify", snakemake.log[0])
    probe = ProbeSettings.from_config(snakemake.params.probe)
    dataset_provenance = read_provenance(snakemake.input.dataset)
    split_settings = read_provenance(snakemake.input.assignment)["settings"]
    provenance = provenance_record(
        "classify",
        asdict(probe),
        embedder=dataset_provenance["embedder"],
        split=split_settings,
        wildcards=dict(snakemake.wildcards),
    )
    transfer = dataset_provenance.get("transfer")
    variants = (
        dict(transfer) if transfer else {"train": [snakemake.wildcards.variant], "test": snakemake.wildcards.variant}
    )
    labels = {**leak_labels(split_settings), "variants": variants, "provenance": provenance}
    title = " / ".join(f"{k}={v}" for k, v in dict(snakemake.wildcards).items())
    split = snakemake.wildcards.split
    record = json.loads(Path(snakemake.input.preconditions).read_text(encoding="utf-8"))
    reason = refusal(record, split, probe_uses(probe))
    if reason:
        # The preconditions job has said why, once, for every probe; this job only records it.
        logger.info("not run: the split fails this probe's preconditions (%s)", snakemake.input.preconditions)
        failures = failures_of(record, split, probe_uses(probe))
        metrics = not_run_metrics(probe, reason, failures, record["checks"][split]["counts"])
        write_not_run(snakemake, {**metrics, **labels}, title)
        return

    import torch

    from workflow_scripts.probes.metrics import confusion
    from workflow_scripts.probes.plots import plot_confusion, plot_curve, plot_per_class

    torch.set_num_threads(snakemake.threads)
    result = run_probe(
        pq.read_table(snakemake.input.dataset),
        dataset_provenance["embedder"],
        pq.read_table(snakemake.input.assignment).to_pandas(),
        probe,
        groups=pd.read_csv(snakemake.input.groups, sep="\t", keep_default_na=False),
        logger=logger,
    )
    metrics = {"status": RAN, **result["metrics"], **labels}
    if metrics["leaky"]:
        logger.warning(
            "the split was made without the overlap guard: these metrics are leaky "
            "(test snippets share measures with training snippets)"
        )
    logger.info("top-1 %.4f top-5 %.4f (%s)", metrics["top1"], metrics["top5"], dict(snakemake.wildcards))
    matrix = confusion(result["labels"], result["scores"].argmax(axis=1), len(result["class_names"]))
    confusion_frame = pd.DataFrame(matrix, index=result["class_names"], columns=result["class_names"])
    confusion_frame.index.name = "true_piece"
    write_json_atomic(snakemake.output.metrics, metrics)
    write_tsv_atomic(result["per_class"], snakemake.output.per_class)
    write_parquet_atomic(
        pa.Table.from_pandas(result["predictions"], preserve_index=False), snakemake.output.predictions, provenance
    )
    write_tsv_atomic(confusion_frame.reset_index(), snakemake.output.confusion)
    write_tsv_atomic(result["curve"], snakemake.output.curve)
    plot_confusion(matrix, result["class_names"], snakemake.output.confusion_png, title)
    plot_curve(result["curve"], snakemake.output.curve_png, title)
    plot_per_class(result["per_class"], snakemake.output.per_class_png, title)
