"""Train/test assignments that cannot leak.

``by_snippet``: every piece with at least two snippets puts a seeded fraction of its
snippets in test. When windows overlap (hop < window), any training snippet that shares
a measure with a test snippet of the same piece is dropped (role ``dropped_overlap``):
otherwise the classifier would be tested on music it was trained on. Pieces with a
single snippet stay in train and are counted.

``by_piece``: a seeded fraction of whole pieces goes to test; for retrieval on unseen
pieces, since a closed-set classifier cannot name a piece it never saw.

Each piece draws from its own generator (seeded by the split seed and the piece id),
so adding or removing a piece does not reshuffle the others.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd

ROLES = ("train", "test", "dropped_overlap")


def piece_rng(seed: int, piece_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(piece_id.encode())])


def overlaps(first_a: int, stop_a: int, first_b: int, stop_b: int) -> bool:
    return first_a < stop_b and first_b < stop_a


def assign_piece_by_snippet(measures: list[tuple[int, int]], test_fraction: float, rng: np.random.Generator) -> list[str]:
    """Roles for one piece's snippets, given as (first_measure, stop_measure) windows."""
    count = len(measures)
    roles = ["train"] * count
    if count < 2:
        return roles
    wanted = min(count - 1, max(1, int(round(test_fraction * count))))
    test: list[int] = []
    for candidate in rng.permutation(count):
        trial = test + [int(candidate)]
        # Keep the candidate only if some snippet is still free of every test window,
        # so the piece keeps at least one training example.
        free = [
            index for index in range(count)
            if index not in trial and not any(overlaps(*measures[index], *measures[t]) for t in trial)
        ]
        if free:
            test = trial
        if len(test) == wanted:
            break
    for index in range(count):
        if index in test:
            roles[index] = "test"
        elif any(overlaps(*measures[index], *measures[t]) for t in test):
            roles[index] = "dropped_overlap"
    return roles


def by_snippet(snippets: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    parts = []
    for piece_id, piece in snippets.sort_values(["piece_id", "snippet_index"]).groupby("piece_id", sort=True):
        windows = list(zip(piece.first_measure.astype(int), piece.stop_measure.astype(int)))
        roles = assign_piece_by_snippet(windows, test_fraction, piece_rng(seed, str(piece_id)))
        parts.append(pd.DataFrame({"snippet_id": piece.snippet_id.values, "piece_id": piece_id, "role": roles}))
    return _concat(parts)


def by_piece(snippets: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    pieces = np.array(sorted(snippets.piece_id.unique()))
    rng = np.random.default_rng(seed)
    test_count = int(round(test_fraction * len(pieces)))
    test_pieces = set(rng.choice(pieces, size=test_count, replace=False).tolist()) if test_count else set()
    roles = np.where(snippets.piece_id.isin(test_pieces), "test", "train")
    return pd.DataFrame({"snippet_id": snippets.snippet_id.values, "piece_id": snippets.piece_id.values, "role": roles})


SPLITTERS = {"by_snippet": by_snippet, "by_piece": by_piece}


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({"snippet_id": [], "piece_id": [], "role": []})
    return pd.concat(parts, ignore_index=True)


def summarise(assignment: pd.DataFrame) -> dict[str, Any]:
    per_piece = assignment.groupby("piece_id").role.agg(lambda roles: set(roles))
    return {
        "snippets": {role: int((assignment.role == role).sum()) for role in ROLES},
        "pieces": int(len(per_piece)),
        "pieces_train_only": int(sum(roles == {"train"} for roles in per_piece)),
        "pieces_single_snippet": int((assignment.groupby("piece_id").size() == 1).sum()),
    }


def make_split(name: str, snippets: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    splitter = SPLITTERS[name]
    return splitter(snippets, float(settings["test_fraction"]), int(settings["seed"]))


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflow_scripts.io_utils import write_parquet_atomic
    from workflow_scripts.provenance import provenance_record

    snippets = pq.read_table(snakemake.input.snippets).to_pandas()
    assignment = make_split(snakemake.wildcards.split, snippets, snakemake.params.settings)
    write_parquet_atomic(
        pa.Table.from_pandas(assignment, preserve_index=False),
        snakemake.output.assignment,
        provenance_record("split", {"split": snakemake.wildcards.split, **snakemake.params.settings}, summary=summarise(assignment)),
    )

