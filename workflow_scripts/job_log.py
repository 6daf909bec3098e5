"""Logging for Snakemake jobs: to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def job_logger(stage: str, log_path: str | Path | None) -> logging.Logger:
    logger = logging.getLogger(f"chorale_id.{stage}")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger
