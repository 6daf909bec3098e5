"""Train / validation / test assignments that cannot leak.

``by_snippet``: every piece with at least two snippets puts a seeded fraction of its
snippets in test. When windows overlap (hop < window), any other snippet of the piece
that shares a measure with a test snippet is dropped (role ``dropped_overlap``):
otherwise the classifier would be tested on music it was trained on. Pieces with a
single snippet stay in train and are counted. A validation part for model selection is
then carved from the remaining training snippets in the same overlap-safe way (about
``validation_fraction`` of them, never a piece's last training snippet).

``by_piece``: a seeded fraction of pieces goes to test, whole. Pieces that the corpus
audit puts in one group (the same chorale under two ids, or harmonisations of one tune)
are held out together, so no test piece has a near-copy in training. A validation part
of whole training groups is carved the same way. Evaluated by retrieval, since a
closed-set classifier cannot name a piece it never saw.

Each piece (or group) draws from its own generator, seeded by the split seed and its id,
so adding or removing a piece does not reshuffle the others.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.roles import ROLES
from workflow_scripts.settings import CLOSED_SET_SPLITS  # noqa: F401 - part of this module's interface


def piece_rng(seed: int, piece_id: str, purpose: str = "") -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{purpose}{piece_id}".encode())])


def overlaps(first_a: int, stop_a: int, first_b: int, stop_b: int) -> bool:
    return first_a < stop_b and first_b < stop_a


def pick_held_out(windows: list[tuple[int, int]], wanted: int, rng: np.random.Generator) -> list[int]:
    """Up to ``wanted`` windows to hold out, keeping at least one window free of all of them."""
    held: list[int] = []
    if wanted <= 0:
        return held
    for candidate in rng.permutation(len(windows)):
        trial = held + [int(candidate)]
        free = [
            index for index in range(len(windows))
            if index not in trial and not any(overlaps(*windows[index], *windows[t]) for t in trial)
        ]
        if free:
            held = trial
        if len(held) == wanted:
            break
    return held


def assign_piece_by_snippet(
    windows: list[tuple[int, int]], test_fraction: float, validation_fraction: float, rng: np.random.Generator
) -> list[str]:
    """Roles for one piece's snippets, given as (first_measure, stop_measure) windows."""
    count = len(windows)
    roles = ["train"] * count
    if count < 2:
        return roles
    test = pick_held_out(windows, min(count - 1, max(1, int(round(test_fraction * count)))), rng)
    for index in range(count):
        if index in test:
            roles[index] = "test"
        elif any(overlaps(*windows[index], *windows[t]) for t in test):
            roles[index] = "dropped_overlap"
    remaining = [index for index in range(count) if roles[index] == "train"]
    if len(remaining) >= 2:
        # Stochastic rounding keeps the expected validation share right even for
        # pieces with two or three training snippets.
        wanted = min(len(remaining) - 1, int(np.floor(validation_fraction * len(remaining) + rng.random())))
        chosen = pick_held_out([windows[index] for index in remaining], wanted, rng)
        validation = [remaining[index] for index in chosen]
        for index in remaining:
            if index in validation:
                roles[index] = "validation"
            elif any(overlaps(*windows[index], *windows[v]) for v in validation):
                roles[index] = "dropped_overlap"
    return roles


def by_snippet(snippets: pd.DataFrame, settings: dict[str, Any], groups: pd.DataFrame | None = None) -> pd.DataFrame:
    parts = []
    for piece_id, piece in snippets.sort_values(["piece_id", "snippet_index"]).groupby("piece_id", sort=True):
        windows = list(zip(piece.first_measure.astype(int), piece.stop_measure.astype(int)))
        roles = assign_piece_by_snippet(
            windows,
            float(settings["test_fraction"]),
            float(settings.get("validation_fraction", 0.0)),
            piece_rng(int(settings["seed"]), str(piece_id)),
        )
        parts.append(pd.DataFrame({"snippet_id": piece.snippet_id.values, "piece_id": piece_id, "role": roles}))
    return _concat(parts)


def holdout_units(pieces: list[str], groups: pd.DataFrame | None) -> dict[str, str]:
    """Piece -> the unit held out with it: its audit group (same tune), else itself."""
    unit = {piece: piece for piece in pieces}
    if groups is not None and len(groups):
        for row in groups.itertuples():
            if row.piece_id in unit and isinstance(row.tune_group, str) and row.tune_group:
                unit[row.piece_id] = row.tune_group
    return unit


def by_piece(snippets: pd.DataFrame, settings: dict[str, Any], groups: pd.DataFrame | None = None) -> pd.DataFrame:
    pieces = sorted(snippets.piece_id.unique())
    unit_of = holdout_units(pieces, groups)
    seed = int(settings["seed"])
    # Each unit draws one uniform number from its own generator: the lowest ones are
    # held out, so the choice of a unit does not depend on the others' ids.
    draws = {unit: piece_rng(seed, unit, "by_piece").random() for unit in sorted(set(unit_of.values()))}
    ordered = sorted(draws, key=lambda unit: (draws[unit], unit))
    unit_sizes = pd.Series(unit_of).value_counts()
    test_units = _take_until(ordered, unit_sizes, float(settings["test_fraction"]) * len(pieces))
    remaining = [unit for unit in ordered if unit not in test_units]
    validation_target = float(settings.get("validation_fraction", 0.0)) * (len(pieces) - sum(unit_sizes[u] for u in test_units))
    validation_units = _take_until(remaining, unit_sizes, validation_target)
    role_of_unit = {unit: "test" for unit in test_units} | {unit: "validation" for unit in validation_units}
    roles = [role_of_unit.get(unit_of[piece], "train") for piece in snippets.piece_id]
    return pd.DataFrame({"snippet_id": snippets.snippet_id.values, "piece_id": snippets.piece_id.values, "role": roles})


def _take_until(units: list[str], sizes: pd.Series, target_pieces: float) -> set[str]:
    taken, count = set(), 0
    for unit in units:
        if count >= round(target_pieces):
            break
        taken.add(unit)
        count += int(sizes[unit])
    return taken


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
        "pieces_with_test": int(sum("test" in roles for roles in per_piece)),
        "pieces_without_test": int(sum("test" not in roles for roles in per_piece)),
        "pieces_single_snippet": int((assignment.groupby("piece_id").size() == 1).sum()),
    }


def make_split(name: str, snippets: pd.DataFrame, settings: dict[str, Any], groups: pd.DataFrame | None = None) -> pd.DataFrame:
    return SPLITTERS[name](snippets, settings, groups)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflow_scripts.io_utils import write_parquet_atomic
    from workflow_scripts.provenance import provenance_record

    snippets = pq.read_table(snakemake.input.snippets).to_pandas()
    groups = pd.read_csv(snakemake.input.groups, sep="\t")
    assignment = make_split(snakemake.wildcards.split, snippets, snakemake.params.settings, groups)
    write_parquet_atomic(
        pa.Table.from_pandas(assignment, preserve_index=False),
        snakemake.output.assignment,
        provenance_record("split", {"split": snakemake.wildcards.split, **snakemake.params.settings}, summary=summarise(assignment)),
    )
