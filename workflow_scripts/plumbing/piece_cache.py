"""A content-addressed store of per-piece results that outlives Snakemake jobs.

Batch jobs write many pieces each. Snakemake deletes every output of a job before it
reruns it and after it fails, so without this store one changed or broken piece would
cost the whole batch. Each finished piece is hard-linked here under a key made of
everything that determines it (input checksums, settings, code digest); a rerun
restores unchanged pieces from here and computes only the rest. (Per-piece files make a
piece a target; batch indexes, batch_index.py, keep the DAG small; this keeps the work.)
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from workflow_scripts.plumbing.io_utils import atomic_path, sha256_json


class PieceCache:
    def __init__(self, root: str | os.PathLike, stage: str):
        self.folder = Path(root) / stage

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        return sha256_json(payload)

    def _entry(self, key: str, name: str) -> Path:
        return self.folder / key[:2] / f"{key}.{name}"

    def restore(self, key: str, destinations: dict[str, Path]) -> bool:
        """Put the cached files for ``key`` at ``destinations``; False if any is missing."""
        entries = {name: self._entry(key, name) for name in destinations}
        if not all(entry.is_file() for entry in entries.values()):
            return False
        now = time.time()
        for name, destination in destinations.items():
            with atomic_path(destination) as temporary:
                _link_or_copy(entries[name], temporary)
            # The restored file must look newer than the job's inputs to Snakemake.
            os.utime(destination, (now, now))
        return True

    def store(self, key: str, produced: dict[str, Path]) -> None:
        for name, path in produced.items():
            with atomic_path(self._entry(key, name)) as temporary:
                _link_or_copy(Path(path), temporary)


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, destination)
