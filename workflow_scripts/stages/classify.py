"""Classify stage: a probe on frozen embeddings, trained on training snippets, scored on test.

The probe's kind (workflow_scripts/probes/kinds/: ``neural``, the report's torch heads, by
default; ``logistic``; ``knn``) fits and scores; this stage chooses the layer, normalises
with training statistics, dispatches, and writes the metrics, predictions and figures.
Curves are outputs of iterative kinds only (rules/classify.smk).

The rest of this docstring describes the neural kind, which the report defined:

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

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.probes.kinds import CommonSettings, fit_and_score, kind_of, settings_from_config
from workflow_scripts.probes.layers import select_layer
from workflow_scripts.probes.metrics import group_accuracy, summarise_predictions
from workflow_scripts.probes.preconditions import NOT_RUN, RAN, failures_of, refusal
from workflow_scripts.probes.probe_data import ProbeData, assemble, fit_normalization


def run_probe(
    dataset_table,
    embedder: dict[str, Any],
    assignment: pd.DataFrame,
    probe: CommonSettings,
    groups: pd.DataFrame | None = None,
    logger=None,
) -> dict[str, Any]:
    from workflow_scripts.pooling import pooled_embeddings

    vectors = select_layer(pooled_embeddings(dataset_table, embedder, probe.pooling), probe.layer)
    data = assemble(
        dataset_table.column("snippet_id").to_pylist(),
        dataset_table.column("piece_id").to_pylist(),
        vectors,
        assignment,
    )
    normalize = fit_normalization(data.features["train"], probe.normalization)
    data.features = {role: normalize(values) for role, values in data.features.items()}
    outcome = fit_and_score(data, probe, logger)
    scores = outcome.scores
    metrics, per_class = summarise_predictions(
        data.labels["test"], scores, data.class_names, probe.bootstrap_resamples, probe.seed
    )
    if groups is not None:
        predicted = np.array(data.class_names)[scores.argmax(axis=1)]
        true = np.array(data.class_names)[data.labels["test"]]
        for column in ("music_group", "tune_group"):
            metrics[f"top1_{column}"] = group_accuracy(true, predicted, groups.set_index("piece_id")[column].to_dict())
    metrics.update(data.counts)
    metrics["train_top1"] = outcome.curve[-1]["train_top1"]
    metrics["train_seconds"] = round(outcome.train_seconds, 3)
    metrics["selected_step"] = outcome.selected_step
    metrics["selected"] = outcome.selected
    metrics.update(outcome.extras)
    metrics["probe"] = asdict(probe)
    return {
        "metrics": metrics,
        "per_class": per_class,
        "predictions": _predictions_frame(data, scores),
        "curve": pd.DataFrame(outcome.curve),
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


def probe_uses(probe: CommonSettings) -> list[str]:
    """The preconditions a probe needs (workflow_scripts/probes/preconditions.py)."""
    return ["probes", "early_stopping"] if kind_of(asdict(probe)).selects_on_validation(probe) else ["probes"]


def not_run_metrics(probe: CommonSettings, reason: str, failures: list, counts: dict[str, int]) -> dict[str, Any]:
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
        if hasattr(snakemake.output, figure):  # curve_png: iterative kinds only
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
    probe = settings_from_config(snakemake.params.probe)
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
    from workflow_scripts.pooling import read_dataset

    result = run_probe(
        read_dataset(snakemake.input.dataset, probe.pooling),
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
    if hasattr(snakemake.output, "curve_png"):  # iterative kinds only (rules/classify.smk)
        plot_curve(result["curve"], snakemake.output.curve_png, title)
    plot_per_class(result["per_class"], snakemake.output.per_class_png, title)
