"""Summary gather: one row per probe run with its settings and headline figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow_scripts.plumbing.io_utils import write_tsv_atomic
from workflow_scripts.probes.preconditions import RAN

SETTING_COLUMNS = [
    "kind",
    "pooling",
    "head",
    "optimizer",
    "normalization",
    "layer",
    "class_weighting",
    "early_stopping",
]
FIGURE_COLUMNS = [
    "top1",
    "top1_ci95",
    "top5",
    "top5_ci95",
    "top1_music_group",
    "top1_tune_group",
    "train_top1",
    "per_class_mean",
    "per_class_median",
    "classes_at_0",
    "classes_at_100",
    "classes",
    "train_snippets",
    "validation_snippets",
    "test_snippets",
    "dropped_overlap_snippets",
    "selected_step",
    "selected",
    "train_seconds",
]
# status: "ran", or "not run" when the split failed the probe's preconditions (reason says
# which, with the counts; workflow_scripts/probes/preconditions.py): its figures are empty.
# leaky: the split had no overlap guard, so test snippets share measures with training ones
# (splits.overlap_guard: false); such a row measures the protocol, not the embedding.
COLUMNS = [
    "embedder",
    "variant",
    "split",
    "probe",
    "leaky",
    "train_variants",
    "test_variant",
    *SETTING_COLUMNS,
    *FIGURE_COLUMNS,
    "ci95_resampling",
    "status",
    "reason",
]


def summary_row(metrics: dict) -> dict:
    row = {**metrics["provenance"]["wildcards"]}
    # Within a variant both are the variant; a transfer (workflow_scripts/stages/transfer_split.py) differs.
    variants = metrics.get("variants") or {"train": [row["variant"]], "test": row["variant"]}
    row.update(train_variants="+".join(variants["train"]), test_variant=variants["test"])
    row.update({column: metrics["probe"].get(column) for column in SETTING_COLUMNS})
    # Probes from before kinds were all the neural kind.
    row["kind"] = row["kind"] or "neural"
    row["pooling"] = row["pooling"] or "native"  # and probes from before poolings read the embedder's own vector
    row.update({column: metrics.get(column) for column in FIGURE_COLUMNS})
    row["leaky"] = bool(metrics.get("leaky", False))
    # What the kind chose on validation ("l2=0.001", "k=5"); empty for fixed recipes.
    row["selected"] = " ".join(f"{name}={value:g}" for name, value in (metrics.get("selected") or {}).items())
    # Metrics from before the preconditions check all ran.
    row["status"] = metrics.get("status", RAN)
    row["reason"] = metrics.get("reason", "")
    if row["status"] != RAN:
        row["ci95_resampling"] = ""
        return row
    # The unit the intervals resample ("pieces"); metrics from before cluster intervals resampled snippets.
    row["ci95_resampling"] = metrics.get("ci95_resampling", "snippets").split(":")[0]
    for key in ("top1_ci95", "top5_ci95"):
        low, high = row[key]
        row[key] = f"{low:.4f}-{high:.4f}"
    return row


def summarise(metric_paths: list[str | Path]) -> pd.DataFrame:
    rows = [summary_row(json.loads(Path(path).read_text(encoding="utf-8"))) for path in metric_paths]
    return pd.DataFrame(rows, columns=COLUMNS)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    write_tsv_atomic(summarise(list(snakemake.input.metrics)), snakemake.output.summary)
