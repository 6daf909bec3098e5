"""The matchers: each ranks every reference piece for every query.

A matcher is a function ``(reference, queries, settings) -> Answers`` in ``MATCHERS``; the
config's ``identification.matchers`` names them (checked at start-up), and an embedder
without what a matcher needs (a pitch-class view for ``chroma_align``, a key roll for
``roll_align``) is skipped for it,
with the reason in the stage's metrics.

- ``cosine``: each query's mean frame against every reference window of the query's length
  (one summary window apart), by cosine; a piece scores its best window.
- ``cosine_std``: the same after standardising every dimension over the reference windows.
- ``cosine_lda``: the same after a projection learned on training pieces only
  (``fit_projection``: linear discriminant analysis with reference windows and every
  rendering's queries of a piece as one class, so positives span renderings); the identify
  stage reports the queries of pieces it never saw apart from those it trained on.
- ``chroma_align``: key-invariant subsequence alignment of compressed 12-bin chroma
  (workflow_scripts/identification/alignment.py), on a shortlist from successive part means
  of chroma under every shift.
- ``roll_align``: the same shortlist, then the alignment of the embedder's key roll unfolded
  (88 keys; for embedders whose pitch-class view is a roll), moved by each shift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workflow_scripts.identification import alignment
from workflow_scripts.identification.reference import frame_mean, layer_of, sliding_windows

# Queries scored against the reference windows at once: bounds the (queries, windows) matrix.
QUERY_CHUNK = 256


@dataclass
class Recordings:
    """Whole pieces or queries, ready for the matchers: per recording its (windows, dim)
    frames of the chosen layer, frame counts, (windows, 12) unit chroma and (windows, keys)
    unit key roll (each None where not asked for, or the embedder has no such view)."""

    ids: list[str]
    pieces: list[str]
    frames: list[np.ndarray]
    counts: list[np.ndarray]
    chroma: list[np.ndarray] | None
    hz: float
    keys: list[np.ndarray] | None = None


@dataclass
class Answers:
    """Per query a score for every reference piece (higher is better) and, per query, where
    in its best piece the match starts (seconds of the reference recording)."""

    scores: np.ndarray  # (queries, pieces)
    start_s: np.ndarray  # (queries, pieces), NaN where unknown


def recordings(
    summarised, layer, pitch_classes, compression: float, roll_compression: float | None = None
) -> Recordings:
    """``summarised`` (reference.Summarised) for the matchers; ``pitch_classes`` (the embedder's
    PitchClassView, or None) gives the chroma, compressed by ``compression``, and, given a
    ``roll_compression``, its unfolded key roll compressed by that."""
    chroma = keys = None
    if pitch_classes is not None:
        chroma = [alignment.compressed(pitch_classes.of(means), compression) for means in summarised.means]
        if roll_compression is not None and has_keys(pitch_classes):
            keys = [
                alignment.compressed(key_roll(pitch_classes, means), roll_compression) for means in summarised.means
            ]
    return Recordings(
        ids=summarised.ids,
        pieces=summarised.pieces,
        frames=[layer_of(means, layer) for means in summarised.means],
        counts=summarised.frames,
        chroma=chroma,
        hz=summarised.hz,
        keys=keys,
    )


def has_keys(view) -> bool:
    """Whether a PitchClassView is a roll of piano keys (``lowest_key``), not chroma bins."""
    return view is not None and view.lowest_key is not None


def key_roll(view, means: np.ndarray) -> np.ndarray:
    """(layers, windows, dim) summary -> (windows, keys): the view's roll, unfolded."""
    return np.asarray(means[view.layer], dtype=np.float32)


def reference_windows(reference: Recordings, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every reference window of ``seconds``: (windows, dim) vectors, each one's piece index and start (s)."""
    span = max(1, int(round(seconds * reference.hz)))
    vectors, owners, starts = [], [], []
    for index, (frames, counts) in enumerate(zip(reference.frames, reference.counts)):
        windows = sliding_windows(frames, counts, span)
        vectors.append(windows)
        owners.append(np.full(len(windows), index))
        starts.append(np.arange(len(windows)) / reference.hz)
    return np.vstack(vectors), np.concatenate(owners), np.concatenate(starts)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def query_vectors(queries: Recordings) -> np.ndarray:
    """Each query's mean frame: (queries, dim)."""
    return np.vstack([frame_mean(frames, counts) for frames, counts in zip(queries.frames, queries.counts)])


@dataclass(frozen=True)
class Projection:
    """x -> (x - centre) @ matrix, learned by ``fit_projection``."""

    centre: np.ndarray
    matrix: np.ndarray

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors - self.centre) @ self.matrix


# Within-class scatter is shrunk towards its mean variance by this share of its trace, so
# directions no training piece varies in (silent keys of a roll) stay finite.
LDA_SHRINKAGE = 1e-3


def fit_projection(vectors: np.ndarray, labels: np.ndarray) -> Projection:
    """Linear discriminant analysis: the directions that spread piece means apart relative to
    the spread within a piece, up to min(dim, pieces - 1) of them, each scaled to unit
    within-piece variance (so cosine after it weighs what tells pieces apart)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    classes, index = np.unique(labels, return_inverse=True)
    centre = vectors.mean(axis=0)
    means = np.zeros((len(classes), vectors.shape[1]))
    np.add.at(means, index, vectors)
    means /= np.bincount(index)[:, None]
    within = vectors - means[index]
    scatter_within = within.T @ within / len(vectors)
    dim = scatter_within.shape[0]
    scatter_within += LDA_SHRINKAGE * np.trace(scatter_within) / dim * np.eye(dim) + 1e-12 * np.eye(dim)
    values, vectors_w = np.linalg.eigh(scatter_within)
    whitening = vectors_w / np.sqrt(values)  # within-piece scatter -> identity
    between = (means - centre) * np.sqrt(np.bincount(index) / len(vectors))[:, None]
    _, spread, directions = np.linalg.svd(between @ whitening, full_matrices=False)
    keep = min(dim, len(classes) - 1, int((spread > 1e-9 * spread.max()).sum())) if len(spread) else 0
    return Projection(centre, whitening @ directions[: max(keep, 1)].T)


def by_cosine(
    reference: Recordings, queries: Recordings, seconds: float, standardise: bool, projection: Projection | None = None
) -> Answers:
    windows, owner, start = reference_windows(reference, seconds)
    vectors = query_vectors(queries)
    if projection is not None:
        windows, vectors = projection(windows), projection(vectors)
    if standardise:
        centre, scale = windows.mean(axis=0), windows.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        windows, vectors = (windows - centre) / scale, (vectors - centre) / scale
    windows, vectors = unit_rows(windows).astype(np.float32), unit_rows(vectors).astype(np.float32)
    pieces = len(reference.ids)
    scores = np.full((len(vectors), pieces), -np.inf)
    start_s = np.full((len(vectors), pieces), np.nan)
    bounds = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    for first in range(0, len(vectors), QUERY_CHUNK):
        similarity = vectors[first : first + QUERY_CHUNK] @ windows.T
        best = np.maximum.reduceat(similarity, bounds, axis=1)
        where = [
            bounds[piece] + np.argmax(similarity[:, bounds[piece] : end], axis=1)
            for piece, end in enumerate([*bounds[1:], len(owner)])
        ]
        scores[first : first + len(best), owner[bounds]] = best
        start_s[first : first + len(best), owner[bounds]] = np.stack([start[column] for column in where], axis=1)
    return Answers(scores, start_s)


def cosine(reference: Recordings, queries: Recordings, seconds: float, settings: dict) -> Answers:
    return by_cosine(reference, queries, seconds, standardise=False)


def cosine_std(reference: Recordings, queries: Recordings, seconds: float, settings: dict) -> Answers:
    return by_cosine(reference, queries, seconds, standardise=True)


def cosine_lda(reference: Recordings, queries: Recordings, seconds: float, settings: dict) -> Answers:
    """``settings["projection"]``: the identify stage's ``fit_projection`` for this query length."""
    return by_cosine(reference, queries, seconds, standardise=False, projection=settings["projection"])


def chroma_align(reference: Recordings, queries: Recordings, seconds: float, settings: dict) -> Answers:
    """Aligns 12-bin chroma under the shortlist's best shifts (``aligned``)."""
    return aligned(reference, queries, seconds, settings, lambda recordings: recordings.chroma, alignment.shifted)


def roll_align(reference: Recordings, queries: Recordings, seconds: float, settings: dict) -> Answers:
    """Aligns the unfolded key roll instead, each chroma shift moving it by at most six
    semitones: the octaves and voicing a folded chroma forgets tell apart two harmonisations
    of one tune, whose chords share their pitch classes."""
    return aligned(reference, queries, seconds, settings, lambda recordings: recordings.keys, alignment.key_shifted)


def aligned(
    reference: Recordings, queries: Recordings, seconds: float, settings: dict, view, transpositions
) -> Answers:
    """Shortlist by successive part means of chroma under every shift (alignment.Shortlister),
    then align ``view`` of the query, as its ``transpositions``, to each shortlisted piece
    under its best shifts; pieces left out rank after the aligned ones, by stage one."""
    span = max(1, int(round(seconds * reference.hz)))
    shortlister = alignment.Shortlister.of(
        reference.chroma, reference.counts, span, settings["shortlist_parts"], settings["shortlist_stretches"]
    )
    stage_one = shortlister.scores(queries.chroma, queries.counts)
    pieces = len(reference.ids)
    size = settings["shortlist"] or pieces
    scores = np.full((len(queries.ids), pieces), -np.inf)
    start_s = np.full((len(queries.ids), pieces), np.nan)
    for row, frames in enumerate(view(queries)):
        candidates, candidate_shifts, best = alignment.shortlisted(stage_one[row], size, settings["shortlist_shifts"])
        cost, start = alignment.align_query(transpositions(frames), view(reference), candidates, candidate_shifts)
        # Costs lie in [0, 2] and similarities in [-1, 1]: 4 below keeps every aligned piece first.
        scores[row] = best - 4.0
        scores[row, candidates] = -cost
        start_s[row, candidates] = start / reference.hz
    return Answers(scores, start_s)


MATCHERS: dict[str, Callable[..., Answers]] = {
    "cosine": cosine,
    "cosine_std": cosine_std,
    "cosine_lda": cosine_lda,
    "chroma_align": chroma_align,
    "roll_align": roll_align,
}
# What a matcher needs of an embedder beyond its time summary: a pitch-class view, and of
# that view a roll of keys (not spectral's chroma bins).
NEEDS_PITCH_CLASSES = {"chroma_align", "roll_align"}
NEEDS_KEYS = {"roll_align"}
# Matchers that learn from training pieces (the by_piece split's train and validation pieces).
LEARNED = {"cosine_lda"}


def check_matchers(names: list[str]) -> None:
    unknown = [name for name in names if name not in MATCHERS]
    if unknown:
        raise ValueError(f"identification.matchers: {unknown} are not matchers; known: {sorted(MATCHERS)}")
