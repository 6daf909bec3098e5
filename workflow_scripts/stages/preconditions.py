"""The preconditions stage: every condition the probes, retrieval and geometry of a variant
(or a transfer) need, checked once from its split assignments and catalogs before any of
them runs (workflow_scripts/probes/preconditions.py). It writes one record and, when
something cannot run, logs one message naming the counts, the excluded files and what to
do; the stages that read the record then write "not run" results instead of failing. The
run-end message and the report repeat it for the uses the run makes (its probes, its metric head)."""

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
    # Every use the data may be put to: the record does not depend on which probes this run has
    # (the run-end message and the report name those), so adding a probe never rewrites it.
    message = run_message(record, None, metric_head=True)
    if message:
        logger.warning("%s", message)
    else:
        logger.info(
            "%s: every precondition holds (%s)", variant, {part: c["counts"] for part, c in record["checks"].items()}
        )
    settings = {key: getattr(snakemake.params, key) for key in ("splits", "geometry")}
    write_json_atomic(
        snakemake.output.preconditions,
        {**record, "provenance": provenance_record("preconditions", settings, wildcards=dict(snakemake.wildcards))},
    )
