"""The preconditions stage: every condition the probes, retrieval and geometry of a variant
(or a transfer) need, checked once from its split assignments and catalogs before any of
them runs (workflow_scripts/probes/preconditions.py). It writes one record and, when
something cannot run, logs one message naming the counts, the excluded files and what to
do; the stages that read the record then write "not run" results instead of failing."""

from __future__ import annotations

from workflow_scripts.probes.preconditions import precondition_record, run_message


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pandas as pd
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import write_json_atomic
    from workflow_scripts.plumbing.job_log import job_logger
    from workflow_scripts.plumbing.provenance import provenance_record

    logger = job_logger("preconditions", snakemake.log[0])
    variant = snakemake.wildcards.variant
    assignments = {
        split: pq.read_table(path, columns=["snippet_id", "piece_id", "role"]).to_pandas()
        for split, path in zip(snakemake.params.splits, snakemake.input.assignments)
    }
    catalogs = {
        str(path): pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str) for path in snakemake.input.catalogs
    }
    record = precondition_record(variant, assignments, catalogs, geometry=snakemake.params.geometry)
    record["message"] = run_message(record, list(snakemake.params.early_stopping_probes), snakemake.params.metric_head)
    if record["message"]:
        logger.warning("%s", record["message"])
    else:
        logger.info(
            "%s: every precondition holds (%s)", variant, {part: c["counts"] for part, c in record["checks"].items()}
        )
    settings = {
        key: getattr(snakemake.params, key) for key in ("splits", "early_stopping_probes", "metric_head", "geometry")
    }
    write_json_atomic(
        snakemake.output.preconditions,
        {**record, "provenance": provenance_record("preconditions", settings, wildcards=dict(snakemake.wildcards))},
    )
