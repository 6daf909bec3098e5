"""Logging for Snakemake jobs: to the rule's log file and to stderr, with progress lines."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

PACKAGE_LOGGER = "chorale_id"
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class TracebackInLogOnly(logging.Formatter):
    """For the terminal: a warning's traceback (an excluded score's, say) stays in the job's
    log file, where it helps whoever mends the file; on stderr it would read as a failure."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno < logging.ERROR and (record.exc_info or record.exc_text):
            # A copy: the record's cached exc_text must still reach the file handler.
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
            return super().format(record) + " (traceback in the job log)"
        return super().format(record)


_TERMINAL_FORMAT = TracebackInLogOnly("%(asctime)s %(levelname)s %(name)s: %(message)s")


def job_logger(stage: str, log_path: str | Path | None) -> logging.Logger:
    """The stage's logger; the package logger writes to stderr and to ``log_path``.

    Calling it again with the same log path (run_stage.py, then the stage's own
    code) reuses the open handlers rather than truncating the log.
    """
    root = logging.getLogger(PACKAGE_LOGGER)
    target = str(Path(log_path).resolve()) if log_path else None
    if getattr(root, "_chorale_log_path", "unset") != target:
        for handler in root.handlers:
            handler.close()
        root.handlers.clear()
        root.setLevel(logging.INFO)
        root.propagate = False
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setFormatter(_TERMINAL_FORMAT)
        handlers: list[logging.Handler] = [terminal]
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(target, mode="w", encoding="utf-8"))
            handlers[-1].setFormatter(_FORMAT)
        for handler in handlers:
            root.addHandler(handler)
        root._chorale_log_path = target  # type: ignore[attr-defined]
    logger = logging.getLogger(f"{PACKAGE_LOGGER}.{stage}")
    logger.setLevel(logging.INFO)
    return logger


def where_this_runs() -> str:
    """Host and, inside a SLURM allocation, the SLURM job id (read by the cluster test)."""
    slurm_job = os.environ.get("SLURM_JOB_ID")
    return socket.gethostname() + (f" in SLURM job {slurm_job}" if slurm_job else " outside SLURM")


def run_job(stage: str, main: Callable, snakemake) -> None:  # pragma: no cover - the Snakemake edge
    """Run a stage's ``main`` with its start, end and any traceback in the rule's log."""
    logger = job_logger(stage, snakemake.log[0] if len(snakemake.log) else None)
    logger.info("rule %s started on %s, %d thread(s)", snakemake.rule, where_this_runs(), snakemake.threads)
    started = time.perf_counter()
    try:
        main(snakemake)
    except Exception:
        logger.exception("rule %s failed after %.1f s", snakemake.rule, time.perf_counter() - started)
        raise
    logger.info("rule %s finished in %.1f s", snakemake.rule, time.perf_counter() - started)


class Progress:
    """tqdm's progress meter (done/total, rate, elapsed and remaining time) as log text.

    Jobs log one line per unit of work rather than redrawing a bar, so the meter is
    readable in a rule's log file and in a cluster job's output.
    """

    def __init__(self, total: int, unit: str):
        self.total, self.unit, self.started = total, unit, time.perf_counter()

    def __call__(self, done: int) -> str:
        from tqdm import tqdm

        elapsed = time.perf_counter() - self.started
        return tqdm.format_meter(done, self.total, elapsed, unit=self.unit, ascii=True, ncols=72).strip()
