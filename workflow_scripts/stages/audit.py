"""Corpus audit: pieces that are the same music, and pieces that share a chorale tune.

music21's Bach corpus holds variant files of one chorale (e.g. ``bwv112.5`` and
``bwv112.5-sc``) and many harmonisations of the same hymn tune. A classifier that
confuses two copies of one chorale is not wrong in any musical sense, and a held-out
piece whose copy is in training is not unseen. This stage finds both:

- **same music**: every voice's melodic contour (intervals between successive notes,
  repeated notes merged, so key and small rhythmic edits do not matter) is near-identical
  to a voice of the other piece (``same_music_threshold``, a difflib similarity ratio
  in [0, 1]);
- **same tune**: the top voice alone is similar (``same_tune_threshold``), whatever the
  harmonisation.

Groups are the connected components of each relation; a piece alone has no group.
"""

from __future__ import annotations

import difflib
from itertools import combinations
from typing import Any

import pandas as pd


def contour(pitches: list[int]) -> tuple[int, ...]:
    """Intervals between successive distinct pitches: invariant to key and repeated notes."""
    intervals = [later - earlier for earlier, later in zip(pitches, pitches[1:])]
    return tuple(step for step in intervals if step != 0)


def similarity(first: tuple[int, ...], second: tuple[int, ...]) -> float:
    if not first and not second:
        return 1.0
    matcher = difflib.SequenceMatcher(None, first, second, autojunk=False)
    return matcher.ratio()


def _bounded_similarity(first: tuple[int, ...], second: tuple[int, ...], threshold: float) -> float:
    """The similarity, or 0 when the cheap upper bound already rules the pair out."""
    matcher = difflib.SequenceMatcher(None, first, second, autojunk=False)
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return 0.0
    return matcher.ratio()


def all_voices_similarity(first: list[tuple[int, ...]], second: list[tuple[int, ...]]) -> float:
    """How well every voice of the piece with fewer parts is matched by some voice of the other.

    Files of one chorale can differ in their number of parts (an added continuo, a
    doubled line), so voices are matched by best similarity rather than by position.
    """
    fewer, more = (first, second) if len(first) <= len(second) else (second, first)
    return min(max(similarity(voice, other) for other in more) for voice in fewer)


class UnionFind:
    def __init__(self, items):
        self.parent = {item: item for item in items}

    def find(self, item):
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, first, second) -> None:
        root_first, root_second = self.find(first), self.find(second)
        if root_first != root_second:
            # The smaller id names the group, so group names are stable.
            keep, merge = sorted((root_first, root_second))
            self.parent[merge] = keep

    def groups(self) -> dict[Any, Any]:
        members: dict[Any, list] = {}
        for item in self.parent:
            members.setdefault(self.find(item), []).append(item)
        return {item: root for root, items in members.items() if len(items) > 1 for item in items}


def audit_pieces(
    voices: dict[str, list[list[int]]], same_music_threshold: float, same_tune_threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group table (one row per piece) and the matching pairs with their similarities."""
    contours = {piece: [contour(pitches) for pitches in parts] for piece, parts in voices.items() if parts}
    pieces = sorted(contours)
    same_music, same_tune = UnionFind(pieces), UnionFind(pieces)
    pairs = []
    for first, second in combinations(pieces, 2):
        melody = _bounded_similarity(contours[first][0], contours[second][0], same_tune_threshold)
        if melody < same_tune_threshold:
            continue
        same_tune.union(first, second)
        voices_similarity = all_voices_similarity(contours[first], contours[second])
        relation = "same_music" if voices_similarity >= same_music_threshold else "same_tune"
        if relation == "same_music":
            same_music.union(first, second)
        pairs.append(
            {
                "piece_a": first,
                "piece_b": second,
                "melody_similarity": round(melody, 4),
                "all_voices_similarity": round(voices_similarity, 4),
                "relation": relation,
            }
        )
    music_groups, tune_groups = same_music.groups(), same_tune.groups()
    table = pd.DataFrame(
        {
            "piece_id": pieces,
            "music_group": [music_groups.get(piece, "") for piece in pieces],
            "tune_group": [tune_groups.get(piece, "") for piece in pieces],
        }
    )
    return table, pd.DataFrame(
        pairs, columns=["piece_a", "piece_b", "melody_similarity", "all_voices_similarity", "relation"]
    )


def group_counts(table: pd.DataFrame) -> dict[str, int]:
    return {
        "same_music_groups": int(table.music_group.replace("", pd.NA).dropna().nunique()),
        "pieces_in_same_music_groups": int((table.music_group != "").sum()),
        "same_tune_groups": int(table.tune_group.replace("", pd.NA).dropna().nunique()),
        "pieces_in_same_tune_groups": int((table.tune_group != "").sum()),
    }


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    from workflow_scripts.plumbing.io_utils import read_provenance, write_json_atomic, write_tsv_atomic
    from workflow_scripts.plumbing.job_log import job_logger

    logger = job_logger("audit", snakemake.log[0])
    voices = {}
    from workflow_scripts.plumbing.batch_index import read_batch_indexes

    for path in read_batch_indexes(list(snakemake.input.renders), "manifest"):
        provenance = read_provenance(path)
        if provenance["status"] == "ok":
            voices[provenance["piece_id"]] = provenance["piece"]["voice_pitches"]
    settings = snakemake.params.settings
    table, pairs = audit_pieces(voices, settings["same_music_threshold"], settings["same_tune_threshold"])
    counts = group_counts(table)
    logger.info("audit of %d pieces: %s", len(table), counts)
    write_tsv_atomic(table, snakemake.output.groups)
    write_tsv_atomic(pairs, snakemake.output.pairs)
    write_json_atomic(snakemake.output.summary, {**counts, "settings": settings})
