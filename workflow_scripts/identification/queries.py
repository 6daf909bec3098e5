"""Query excerpts cut from whole-piece renderings.

Each piece gets ``count`` start points drawn from a generator seeded by the run's seed and the
piece id alone, so a piece's queries are the same on every rerun and do not move when pieces
are added or removed. A start point is the same fraction, in every rendering, of the span where
the longest query fits (so under a tempo deformation it lies near, not at, the same place in
the music; each query records its own start in measures). Starts are continuous, so almost
never on a measure boundary; every query length starts at the same points (a 2-s query is the
beginning of the 8-s one), so top-1 against length compares like with like.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from workflow_scripts.plumbing.snippet_audio import MANIFEST_SCHEMA


@dataclass(frozen=True)
class QuerySettings:
    seconds: tuple[float, ...]
    per_piece: int
    seed: int
    sample_rate: int

    @classmethod
    def from_params(cls, params: dict) -> QuerySettings:
        return cls(
            seconds=tuple(float(value) for value in params["query_seconds"]),
            per_piece=int(params["queries_per_piece"]),
            seed=int(params["seed"]),
            sample_rate=int(params["sample_rate"]),
        )

    def as_dict(self) -> dict:
        return {
            "query_seconds": list(self.seconds),
            "queries_per_piece": self.per_piece,
            "seed": self.seed,
            "sample_rate": self.sample_rate,
        }


def start_fractions(piece_id: str, seed: int, count: int) -> np.ndarray:
    """``count`` numbers in [0, 1) that depend on the seed and this piece only."""
    generator = np.random.default_rng([seed, zlib.crc32(piece_id.encode("utf-8"))])
    return np.sort(generator.random(count))


def measure_position(seconds: float | np.ndarray, measure_starts_s: np.ndarray) -> np.ndarray:
    """Times in a recording as fractional measure positions (0 = the first measure's start)."""
    return np.interp(seconds, measure_starts_s, np.arange(len(measure_starts_s), dtype=np.float64))


def query_id(piece_id: str, seconds: float, index: int) -> str:
    return f"{piece_id}:{seconds:g}s:{index}"


def query_seconds(query: str) -> float:
    """The length a ``query_id`` names (counted from the end: a piece id may hold a colon)."""
    return float(query.split(":")[-2].rstrip("s"))


def cut_queries(whole: pa.Table, measure_starts_s: list[float], settings: QuerySettings) -> pa.Table:
    """The query manifest of one piece: one row per query (MANIFEST_SCHEMA), its samples a
    span of the whole-piece recording and its notes those sounding in it, re-timed to it.

    ``whole`` is the piece's whole-piece manifest (one row; none when the piece was excluded).
    A query length longer than the piece gives that piece no query of that length."""
    if whole.num_rows == 0:
        return MANIFEST_SCHEMA.empty_table()
    piece = whole.slice(0, 1).to_pylist()[0]
    duration = piece["num_samples"] / settings.sample_rate
    fitting = [seconds for seconds in settings.seconds if seconds <= duration]
    if not fitting:
        return MANIFEST_SCHEMA.empty_table()
    fractions = start_fractions(piece["piece_id"], settings.seed, settings.per_piece)
    starts = np.round(fractions * (duration - max(fitting)) * settings.sample_rate).astype(np.int64)
    bounds = np.asarray(measure_starts_s, dtype=np.float64)
    notes = np.array([piece["note_pitch"], piece["note_onset_s"], piece["note_offset_s"]], dtype=np.float64).T
    rows = []
    for seconds in fitting:
        length = int(round(seconds * settings.sample_rate))
        for index, start in enumerate(starts):
            start_s, end_s = start / settings.sample_rate, (start + length) / settings.sample_rate
            first, stop = measure_position(np.array([start_s, end_s]), bounds)
            rows.append(
                {
                    "snippet_id": query_id(piece["piece_id"], seconds, index),
                    "piece_id": piece["piece_id"],
                    "snippet_index": len(rows),
                    "first_measure": int(np.floor(first)),
                    "stop_measure": int(np.ceil(stop)),
                    "first_measure_number": piece["first_measure_number"] + int(np.floor(first)),
                    "last_measure_number": piece["first_measure_number"] + int(np.ceil(stop)) - 1,
                    "start_s": start_s,
                    "end_s": end_s,
                    "sample_offset": int(piece["sample_offset"] + start),
                    "num_samples": length,
                    **notes_in_span(notes, start_s, end_s),
                }
            )
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def notes_in_span(notes: np.ndarray, start_s: float, end_s: float) -> dict[str, list]:
    """The notes (key, onset, offset) sounding in [start_s, end_s), cut at its edges and timed from its start."""
    if notes.size == 0:
        return {"note_pitch": [], "note_onset_s": [], "note_offset_s": []}
    sounding = notes[(notes[:, 1] < end_s) & (notes[:, 2] > start_s)]
    return {
        "note_pitch": sounding[:, 0].astype(int).tolist(),
        "note_onset_s": (np.maximum(sounding[:, 1], start_s) - start_s).tolist(),
        "note_offset_s": (np.minimum(sounding[:, 2], end_s) - start_s).tolist(),
    }
