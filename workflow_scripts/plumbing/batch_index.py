"""Batch index files: what one render or embed batch job wrote, piece by piece.

Every piece keeps its own output files, but the steps after a batch depend on the
batch's index rather than on each piece's files: the catalog, the audit and the dataset
gather list one index per batch instead of one file per piece, and an embed batch lists
the one to three render batches it reads. At 10,000 pieces that is 625 inputs to a gather
instead of 10,000, which is what keeps building the DAG fast (benchmarks/workflow_overhead.py).
The index is written last, after every piece's files, so it exists only for a finished batch.
(What a rerun keeps of a batch's pieces is the piece cache's job, piece_cache.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workflow_scripts.plumbing.io_utils import write_json_atomic


class BatchIndexError(ValueError):
    """An index that does not say what its readers need; the message names the file."""


def write_batch_index(path: str | Path, stage: str, pieces: list[dict[str, Any]]) -> None:
    """``pieces``: one mapping per piece, in batch order, with ``piece_id`` and its file paths."""
    write_json_atomic(path, {"stage": stage, "pieces": pieces})


def read_batch_indexes(paths: list[str | Path], field: str) -> list[str]:
    """The ``field`` path of every piece listed in ``paths``, in index then batch order."""
    found = []
    for path in paths:
        index = json.loads(Path(path).read_text(encoding="utf-8"))
        for piece in index.get("pieces", []):
            if field not in piece:
                raise BatchIndexError(
                    f"{path}: piece {piece.get('piece_id')!r} has no {field!r}; delete the index and rerun its batch"
                )
            found.append(piece[field])
    return found
