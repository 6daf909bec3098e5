"""Key-invariant subsequence alignment of chroma sequences.

The query (T frames) is aligned to any stretch of the reference: every query frame is matched
to exactly one reference frame and the reference advances by 0, 1 or 2 frames per query
frame (steps (1,0), (1,1), (1,2) in (query, reference)), so a path holds T costs whatever the
tempo ratio (up to twice as fast) and path costs compare directly. The recursion runs over
query frames with numpy across all reference columns at once, because every step comes from
the previous query frame. ``librosa.sequence.dtw(C, subseq=True, step_sizes_sigma=[[1, 0],
[1, 1], [1, 2]])`` computes the same accumulated cost (tests/test_identification.py checks it
against a plain loop; benchmarks time it).

Key invariance: the query's chroma is rolled by each of the 12 semitone shifts. Against a
large reference the alignment runs on a shortlist (``shortlisted``): the pieces whose
windows best match the query's mean chroma under some shift, each with its best shifts.
"""

from __future__ import annotations

import numpy as np

SEMITONES = 12
# Reference columns between pieces with an infinite cost: a step advances at most 2 columns,
# so no path crosses from one piece into the next.
SEPARATOR = 2


def compressed_chroma(chroma: np.ndarray, compression: float) -> np.ndarray:
    """(frames, 12) chroma, log(1 + c x) compressed (c = 0: as is), each frame to unit length."""
    chroma = np.maximum(np.asarray(chroma, dtype=np.float32), 0.0)
    if compression > 0:
        chroma = np.log1p(compression * chroma)
    norms = np.linalg.norm(chroma, axis=-1, keepdims=True)
    return chroma / np.maximum(norms, 1e-8)


def shifted(chroma: np.ndarray) -> np.ndarray:
    """(12, frames, 12): the chroma transposed by 0..11 semitones up."""
    return np.stack([np.roll(chroma, shift, axis=-1) for shift in range(SEMITONES)])


def subsequence_align(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best path cost ending at each reference column, as a mean per query frame, and the
    column that path starts at. ``cost`` is (T, N), infinite where no path may go."""
    frames, columns = cost.shape
    accumulated = cost[0].astype(np.float64)
    start = np.arange(columns)
    diagonal, skip = np.full(columns, np.inf), np.full(columns, np.inf)
    diagonal_start, skip_start = np.zeros(columns, np.int64), np.zeros(columns, np.int64)
    for frame in range(1, frames):
        # (1, 1) comes from one column back, (1, 0) holds the column, (1, 2) skips one;
        # ties keep the diagonal, then the held column.
        diagonal[1:], diagonal_start[1:] = accumulated[:-1], start[:-1]
        skip[2:], skip_start[2:] = accumulated[:-2], start[:-2]
        hold = accumulated < diagonal
        best = np.where(hold, accumulated, diagonal)
        best_start = np.where(hold, start, diagonal_start)
        skipping = skip < best
        accumulated = np.where(skipping, skip, best) + cost[frame]
        start = np.where(skipping, skip_start, best_start)
    return accumulated / frames, start


def aligned_reference(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The pieces' (frames, 12) chroma one after another with separators: (N, 12) and each
    column's piece index (-1 on separators)."""
    parts, owners = [], []
    for index, chroma in enumerate(pieces):
        parts += [chroma, np.zeros((SEPARATOR, SEMITONES), np.float32)]
        owners += [np.full(len(chroma), index), np.full(SEPARATOR, -1)]
    return np.concatenate(parts), np.concatenate(owners)


def shortlisted(
    query: np.ndarray, window_chroma: np.ndarray, window_piece: np.ndarray, pieces: int, size: int, shifts: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage one: the ``size`` pieces whose query-length windows best match the query's mean
    chroma under some shift, each with its ``shifts`` best shifts.

    ``window_chroma`` is (windows, 12) unit mean chroma of every reference window, ``window_piece``
    each window's piece. Returns the shortlisted pieces (best first), their shifts (size, shifts)
    and every piece's stage-one similarity (pieces,), for ranking those left out."""
    mean = query.mean(axis=0)
    mean = mean / max(float(np.linalg.norm(mean)), 1e-8)
    similarity = window_chroma @ shifted(mean[None])[:, 0].T  # (windows, 12)
    per_piece = np.full((pieces, SEMITONES), -np.inf)
    np.maximum.at(per_piece, window_piece, similarity)
    best = per_piece.max(axis=1)
    order = np.argsort(-best, kind="stable")[: min(size, pieces)]
    best_shifts = np.argsort(-per_piece[order], axis=1, kind="stable")[:, :shifts]
    return order, best_shifts, best


def align_query(query: np.ndarray, reference: list[np.ndarray], candidates: np.ndarray, shifts: np.ndarray):
    """Stage two: the query aligned to each candidate piece under each of its shifts.

    Returns per candidate its best mean cost, and the reference frame (within the piece)
    where that path starts."""
    rolled = shifted(query)
    lengths = np.array([len(reference[piece]) + SEPARATOR for piece in candidates for _ in range(shifts.shape[1])])
    firsts = np.r_[0, np.cumsum(lengths)[:-1]]  # where each (candidate, shift) block starts
    columns = np.zeros((int(lengths.sum()), SEMITONES), np.float32)
    block_shift = shifts.reshape(-1)
    for first, piece in zip(firsts, np.repeat(candidates, shifts.shape[1])):
        columns[first : first + len(reference[piece])] = reference[piece]
    # cost[t, j] = 1 - (query frame t rolled by column j's shift) . (reference column j): one
    # product per shift over the columns of every block aligned under it.
    cost = np.empty((len(query), len(columns)), np.float32)
    column_shift = np.repeat(block_shift, lengths)
    for shift in np.unique(block_shift):
        under = column_shift == shift
        cost[:, under] = 1.0 - rolled[shift] @ columns[under].T
    separators = (firsts + lengths)[:, None] - np.arange(1, SEPARATOR + 1)[None, :]
    cost[:, separators.reshape(-1)] = np.inf
    mean_cost, start = subsequence_align(cost)
    # Each block's best end, and where its path starts within the piece.
    ends = np.array([first + np.argmin(mean_cost[first : first + length]) for first, length in zip(firsts, lengths)])
    block_cost = mean_cost[ends].reshape(shifts.shape)
    block_start = (start[ends] - firsts).reshape(shifts.shape)
    best = np.argmin(block_cost, axis=1)
    rows = np.arange(len(candidates))
    return block_cost[rows, best], block_start[rows, best].astype(np.int64)
