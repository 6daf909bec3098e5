"""Train / validation / test assignments that cannot leak.

``by_snippet``: every piece with at least two snippets puts a seeded fraction of its
snippets in test. When windows overlap (hop < window), any other snippet of the piece
that shares a measure with a test snippet is dropped (role ``dropped_overlap``):
otherwise the classifier would be tested on music it was trained on. Pieces with a
single snippet stay in train and are counted. A validation part for model selection is
then carved from the remaining training snippets in the same overlap-safe way (about
``validation_fraction`` of them, never a piece's last training snippet).

``overlap_guard: false`` turns the guard off, to measure what it prevents (the published
report's protocol split overlapping windows by snippet without it): test and validation
snippets are drawn at random and nothing is dropped, so a test snippet can share measures
with training snippets. Every metric of such a split is marked leaky; it is never the
default.

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

# CLOSED_SET_SPLITS and is_leaky are part of this module's interface.
from workflow_scripts.plumbing.roles import CLOSED_SET_SPLITS, ROLES, TRAINING_ROLES, is_leaky, overlaps  # noqa: F401


def piece_rng(seed: int, piece_id: str, purpose: str = "") -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{purpose}{piece_id}".encode())])


def pick_held_out(windows: list[tuple[int, int]], wanted: int, rng: np.random.Generator) -> list[int]:
    """Up to ``wanted`` windows to hold out, keeping at least one window free of all of them."""
    held: list[int] = []
    if wanted <= 0:
        return held
    for candidate in rng.permutation(len(windows)):
        trial = held + [int(candidate)]
        free = [
            index
            for index in range(len(windows))
            if index not in trial and not any(overlaps(*windows[index], *windows[t]) for t in trial)
        ]
        if free:
            held = trial
        if len(held) == wanted:
            break
    return held


def assign_piece_by_snippet(
    windows: list[tuple[int, int]],
    test_fraction: float,
    validation_fraction: float,
    rng: np.random.Generator,
    overlap_guard: bool = True,
) -> list[str]:
    """Roles for one piece's snippets, given as (first_measure, stop_measure) windows."""
    count = len(windows)
    roles = ["train"] * count
    if count < 2:
        return roles
    wanted_test = min(count - 1, max(1, int(round(test_fraction * count))))
    hold_out(roles, list(range(count)), windows, wanted_test, "test", rng, overlap_guard)
    remaining = [index for index in range(count) if roles[index] == "train"]
    if len(remaining) >= 2:
        # Stochastic rounding keeps the expected validation share right even for
        # pieces with two or three training snippets.
        wanted = min(len(remaining) - 1, int(np.floor(validation_fraction * len(remaining) + rng.random())))
        hold_out(roles, remaining, windows, wanted, "validation", rng, overlap_guard)
    return roles


def hold_out(
    roles: list[str],
    candidates: list[int],
    windows: list[tuple[int, int]],
    wanted: int,
    role: str,
    rng: np.random.Generator,
    overlap_guard: bool,
) -> None:
    """Give ``role`` to up to ``wanted`` of the ``candidates``, in place. With the guard, the
    other candidates that share a measure with a chosen one are dropped; without it they stay."""
    if overlap_guard:
        chosen = [candidates[index] for index in pick_held_out([windows[c] for c in candidates], wanted, rng)]
    else:
        chosen = [candidates[int(index)] for index in rng.permutation(len(candidates))[:wanted]]
    for index in candidates:
        if index in chosen:
            roles[index] = role
        elif overlap_guard and any(overlaps(*windows[index], *windows[c]) for c in chosen):
            roles[index] = "dropped_overlap"


def by_snippet(snippets: pd.DataFrame, settings: dict[str, Any], groups: pd.DataFrame | None = None) -> pd.DataFrame:
    parts = []
    for piece_id, piece in snippets.sort_values(["piece_id", "snippet_index"]).groupby("piece_id", sort=True):
        windows = list(zip(piece.first_measure.astype(int), piece.stop_measure.astype(int)))
        roles = assign_piece_by_snippet(
            windows,
            float(settings["test_fraction"]),
            float(settings.get("validation_fraction", 0.0)),
            piece_rng(int(settings["seed"]), str(piece_id)),
            overlap_guard=bool(settings.get("overlap_guard", True)),
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
    validation_target = float(settings.get("validation_fraction", 0.0)) * (
        len(pieces) - sum(unit_sizes[u] for u in test_units)
    )
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


def leaked_test_snippets(assignment: pd.DataFrame, snippets: pd.DataFrame) -> int:
    """Test snippets that share a measure with a training or validation snippet of their piece:
    0 under the overlap guard, the size of the leak without it."""
    windows = assignment.drop(columns=["first_measure", "stop_measure"], errors="ignore").merge(
        snippets[["snippet_id", "first_measure", "stop_measure"]], on="snippet_id", how="left"
    )
    leaked = 0
    for _, piece in windows.groupby("piece_id"):
        seen = piece[piece.role.isin(TRAINING_ROLES)][["first_measure", "stop_measure"]].to_numpy()
        for first, stop in piece[piece.role == "test"][["first_measure", "stop_measure"]].to_numpy():
            leaked += bool(len(seen)) and bool(overlaps(seen[:, 0], seen[:, 1], first, stop).any())
    return int(leaked)


def summarise(assignment: pd.DataFrame, snippets: pd.DataFrame | None = None) -> dict[str, Any]:
    per_piece = assignment.groupby("piece_id").role.agg(lambda roles: set(roles))
    leak = {}
    if snippets is not None:
        leak["test_snippets_sharing_measures_with_training"] = leaked_test_snippets(assignment, snippets)
    return {
        **leak,
        "snippets": {role: int((assignment.role == role).sum()) for role in ROLES},
        "pieces": int(len(per_piece)),
        "pieces_with_test": int(sum("test" in roles for roles in per_piece)),
        "pieces_without_test": int(sum("test" not in roles for roles in per_piece)),
        "pieces_single_snippet": int((assignment.groupby("piece_id").size() == 1).sum()),
    }


def make_split(
    name: str, snippets: pd.DataFrame, settings: dict[str, Any], groups: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The split's roles, with each snippet's measure window beside them: a probe that carves
    selection folds from the training roles (kinds' ``selection_folds``) keeps the same overlap guard."""
    assignment = SPLITTERS[name](snippets, settings, groups)
    windows = snippets[["snippet_id", "first_measure", "stop_measure"]]
    return assignment.merge(windows, on="snippet_id", how="left", validate="one_to_one")


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import write_parquet_atomic
    from workflow_scripts.plumbing.job_log import job_logger
    from workflow_scripts.plumbing.provenance import provenance_record

    logger = job_logger("split", snakemake.log[0])
    settings = snakemake.params.settings
    snippets = pq.read_table(snakemake.input.snippets).to_pandas()
    groups = pd.read_csv(snakemake.input.groups, sep="\t")
    assignment = make_split(snakemake.wildcards.split, snippets, settings, groups)
    summary = summarise(assignment, snippets)
    if is_leaky({"split": snakemake.wildcards.split, **settings}):
        logger.warning(
            "splits.overlap_guard is false: %d of %d test snippets share measures with training snippets of their "
            "piece. Every metric of this split is marked leaky; set splits.overlap_guard: true for a sound figure.",
            summary["test_snippets_sharing_measures_with_training"],
            summary["snippets"]["test"],
        )
    logger.info("%s: %s", snakemake.wildcards.split, summary)
    write_parquet_atomic(
        pa.Table.from_pandas(assignment, preserve_index=False),
        snakemake.output.assignment,
        provenance_record("split", {"split": snakemake.wildcards.split, **settings}, summary=summary),
    )
