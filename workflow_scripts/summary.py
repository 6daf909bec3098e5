"""Summary gather: one row per probe run with its headline figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow_scripts.io_utils import write_tsv_atomic

COLUMNS = [
    "embedder", "variant", "split", "probe", "top1", "top1_ci95", "top5", "top5_ci95", "train_top1",
    "per_class_mean", "per_class_median", "classes_at_0", "classes_at_100", "classes", "train_snippets",
    "test_snippets", "dropped_overlap_snippets", "train_seconds",
]


def summarise(metric_paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in metric_paths:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
        wildcards = metrics["provenance"]["wildcards"]
        row = {**wildcards, **{k: metrics.get(k) for k in COLUMNS if k not in wildcards}}
        for key in ("top1_ci95", "top5_ci95"):
            low, high = row[key]
            row[key] = f"{low:.4f}-{high:.4f}"
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    write_tsv_atomic(summarise(list(snakemake.input.metrics)), snakemake.output.summary)

