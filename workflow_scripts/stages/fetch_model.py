"""Fetch an embedder's weights into the cache, on the submit host before any GPU job, and
check the files against the sizes and full SHA-256s the config records (embedders/weights.py:
a file that differs is refused, the error naming both values)."""

from __future__ import annotations

from workflow_scripts.embedders.weights import (
    check_known_files,
    describe_model_folder,
    expected_files,
    resolve_model_folder,
)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    from workflow_scripts.plumbing.io_utils import write_json_atomic
    from workflow_scripts.plumbing.job_log import job_logger

    logger = job_logger("fetch_model", snakemake.log[0])
    settings, name = snakemake.params.settings, snakemake.params.name
    folder = resolve_model_folder(settings, name, download=True)
    record = {"model_id": settings["model_id"], "revision": settings["revision"], **describe_model_folder(folder)}
    check_known_files(record["files"], expected_files(settings), name)
    logger.info("model files ready: %s", record)
    write_json_atomic(snakemake.output.marker, record)
