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
# Identification rows (split "identification", probe = the matcher, variant = the query
# rendering, train_variants = the reference; workflow_scripts/stages/identify.py) add these;
# probe rows leave them empty.
IDENTIFICATION_COLUMNS = ["query_seconds", "query_pieces", "mrr", "mrr_ci95", "localised", "localised_ci95", "queries"]
IDENTIFICATION_SPLIT = "identification"
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
    *IDENTIFICATION_COLUMNS,
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
        row[key] = interval_text(row[key])
    return row


def interval_text(bounds) -> str:
    low, high = bounds
    return f"{low:.4f}-{high:.4f}"


def identification_rows(metrics: dict) -> list[dict]:
    """One row per query rendering, matcher and query length of one embedder's identify stage."""
    provenance = metrics["provenance"]
    rows = []
    for figures in metrics["rows"]:
        row = {
            "embedder": provenance["embedder"],
            "variant": figures["rendering"],
            "split": IDENTIFICATION_SPLIT,
            "probe": figures["matcher"],
            "leaky": False,
            "train_variants": provenance["reference"],
            "test_variant": figures["rendering"],
            "kind": "identify",
            "ci95_resampling": "pieces",
            "status": RAN,
            "reason": "",
            "test_snippets": figures["queries"],
        }
        figure_names = ("top1", "top5", "top1_music_group", "query_seconds", "mrr", "localised", "queries")
        row.update({column: figures.get(column) for column in figure_names})
        # "all"; for a learned matcher "held_out" or "seen" (workflow_scripts/stages/identify.py).
        row["query_pieces"] = figures.get("query_pieces", "all")
        for column in ("top1_ci95", "top5_ci95", "mrr_ci95", "localised_ci95"):
            row[column] = interval_text(figures[column])
        rows.append(row)
    return rows


def summarise(metric_paths: list[str | Path], identification_paths: list[str | Path] = ()) -> pd.DataFrame:
    read = lambda path: json.loads(Path(path).read_text(encoding="utf-8"))  # noqa: E731
    rows = [summary_row(read(path)) for path in metric_paths]
    rows += [row for path in identification_paths for row in identification_rows(read(path))]
    return pd.DataFrame(rows, columns=COLUMNS)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    summary = summarise(list(snakemake.input.metrics), list(snakemake.input.identification))
    write_tsv_atomic(summary, snakemake.output.summary)
