"""Key-invariant subsequence alignment of chroma sequences.

The query (T frames) is aligned to any stretch of the reference: every query frame is matched
to exactly one reference frame and the reference advances by 0, 1 or 2 frames per query
frame (steps (1,0), (1,1), (1,2) in (query, reference)), so a path holds T costs whatever the
tempo ratio (up to twice as fast) and path costs compare directly. The recursion runs over
query frames with numpy across all reference columns at once, because every step comes from
the previous query frame. ``librosa.sequence.dtw(C, subseq=True, step_sizes_sigma=[[1, 0],
[1, 1], [1, 2]])`` computes the same accumulated cost (tests/test_identification.py checks it
against a plain loop; benchmarks time it).

Key invariance: the query's chroma is rolled by each of the 12 semitone shifts (or, for
a key roll, moved by up to six semitones either way). Against a
large reference the alignment runs on a shortlist (``Shortlister``, ``shortlisted``): the
pieces whose windows best match the query's successive part means under some shift, each
with its best shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workflow_scripts.identification.reference import sliding_windows

SEMITONES = 12
# Reference columns between pieces with an infinite cost: a step advances at most 2 columns,
# so no path crosses from one piece into the next.
SEPARATOR = 2


def compressed(frames: np.ndarray, compression: float) -> np.ndarray:
    """(frames, bins) chroma or key roll, log(1 + c x) compressed (c = 0: as is), each frame to unit length."""
    frames = np.maximum(np.asarray(frames, dtype=np.float32), 0.0)
    if compression > 0:
        frames = np.log1p(compression * frames)
    norms = np.linalg.norm(frames, axis=-1, keepdims=True)
    return frames / np.maximum(norms, 1e-8)


def shifted(chroma: np.ndarray) -> np.ndarray:
    """(12, frames, 12): the chroma transposed by 0..11 semitones up."""
    return np.stack([np.roll(chroma, shift, axis=-1) for shift in range(SEMITONES)])


def key_offset(shift: int) -> int:
    """The semitones a key roll moves for chroma shift ``shift`` (0..11 up): the nearer of
    ``shift`` up and ``12 - shift`` down (6 goes down)."""
    return shift if shift < SEMITONES // 2 else shift - SEMITONES


def key_shifted(roll: np.ndarray) -> np.ndarray:
    """(12, frames, keys): the roll moved by ``key_offset`` of each chroma shift, keys pushed
    off either end dropped and those entering silent (a transposition keeps octaves, which
    a folded chroma forgets)."""
    moved = np.zeros((SEMITONES, *roll.shape), np.float32)
    for shift in range(SEMITONES):
        offset = key_offset(shift)
        if offset >= 0:
            moved[shift, :, offset:] = roll[:, : roll.shape[1] - offset]
        else:
            moved[shift, :, :offset] = roll[:, -offset:]
    return moved


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


@dataclass
class Shortlister:
    """Stage one, order-aware: a query's chroma cut into ``parts`` successive part means is
    compared, under each of the 12 shifts, with the same parts at every position of every
    reference piece, each part ``span * stretch / parts`` frames long for each stretch (so a
    performance up to that much faster or slower still lines its parts up). A score is the
    mean of the parts' cosines; a piece scores its best position and stretch, per shift.

    With ``parts = 1`` this is the windowed mean chroma (a key profile, blind to order);
    under all 12 shifts nearly every diatonic piece matches some key profile, which is why
    the order matters once the query may be transposed."""

    vectors: np.ndarray  # (positions, parts * 12), every piece's positions contiguous
    bounds: np.ndarray  # each piece's first row in ``vectors``
    parts: int

    @classmethod
    def of(cls, pieces: list[np.ndarray], counts: list[np.ndarray], span: int, parts: int, stretches) -> Shortlister:
        lengths = sorted({max(1, int(round(span * stretch / parts))) for stretch in stretches})
        per_piece = [
            np.vstack([part_means_at_every_start(chroma, count, length, parts) for length in lengths])
            for chroma, count in zip(pieces, counts)
        ]
        bounds = np.r_[0, np.cumsum([len(rows) for rows in per_piece])[:-1]]
        return cls(np.vstack(per_piece).astype(np.float32), bounds.astype(np.int64), parts)

    def scores(self, queries: list[np.ndarray], query_counts: list[np.ndarray]) -> np.ndarray:
        """(queries, pieces, 12): each piece's best score under each shift."""
        if not queries:
            return np.zeros((0, len(self.bounds), SEMITONES), np.float32)
        rolled = np.stack([shifted_parts(query_parts(q, c, self.parts)) for q, c in zip(queries, query_counts)])
        flat = rolled.reshape(-1, rolled.shape[-1]).astype(np.float32)  # (queries * 12, parts * 12)
        # Rows of queries x shifts per product, so the (rows, positions) block stays near 256 MB.
        rows = max(SEMITONES, (SHORTLIST_BLOCK_BYTES // (4 * len(self.vectors))) // SEMITONES * SEMITONES)
        best = np.empty((len(flat), len(self.bounds)), np.float32)
        for first in range(0, len(flat), rows):
            best[first : first + rows] = np.maximum.reduceat(
                flat[first : first + rows] @ self.vectors.T, self.bounds, axis=1
            )
        return best.reshape(len(queries), SEMITONES, len(self.bounds)).transpose(0, 2, 1)


SHORTLIST_BLOCK_BYTES = 256 * 2**20


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-8)


def part_means_at_every_start(chroma: np.ndarray, counts: np.ndarray, length: int, parts: int) -> np.ndarray:
    """(starts, parts * 12): at every start frame, the unit means of ``parts`` successive runs
    of ``length`` frames, over sqrt(parts) (so a dot product is the parts' mean cosine). Near
    a short piece's end the last run repeats."""
    length = max(1, min(length, len(chroma)))
    means = unit(sliding_windows(chroma, counts, length))
    starts = np.arange(max(1, len(means) - (parts - 1) * length))
    picks = np.minimum(starts[:, None] + length * np.arange(parts)[None, :], len(means) - 1)
    return means[picks].reshape(len(starts), -1) / np.sqrt(parts)


def query_parts(chroma: np.ndarray, counts: np.ndarray, parts: int) -> np.ndarray:
    """(parts, 12): the query's frames cut into ``parts`` near-equal successive runs, each
    run's unit mean over sqrt(parts)."""
    runs = np.array_split(np.arange(len(chroma)), min(parts, len(chroma)))
    weights = counts.astype(np.float64)
    means = [weights[run] @ chroma[run] / max(weights[run].sum(), 1.0) for run in runs]
    means += [means[-1]] * (parts - len(means))  # a query of fewer frames than parts
    return unit(np.array(means)) / np.sqrt(parts)


def shifted_parts(parts: np.ndarray) -> np.ndarray:
    """(12, parts * 12): every part transposed by 0..11 semitones up, flattened."""
    return np.stack([np.roll(parts, shift, axis=-1).reshape(-1) for shift in range(SEMITONES)])


def shortlisted(per_shift: np.ndarray, size: int, shifts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From one query's (pieces, 12) stage-one scores: the ``size`` best pieces (best first),
    each one's ``shifts`` best shifts (size, shifts), and every piece's best score (pieces,),
    for ranking the pieces left out."""
    best = per_shift.max(axis=1)
    order = np.argsort(-best, kind="stable")[: min(size, len(best))]
    best_shifts = np.argsort(-per_shift[order], axis=1, kind="stable")[:, :shifts]
    return order, best_shifts, best


def align_query(rolled: np.ndarray, reference: list[np.ndarray], candidates: np.ndarray, shifts: np.ndarray):
    """Stage two: the query, as its (12, frames, bins) transpositions (``shifted`` of its
    chroma or ``key_shifted`` of its key roll, unit frames), aligned to each candidate
    piece's (frames, bins) under each of its shifts.

    Returns per candidate its best mean cost, and the reference frame (within the piece)
    where that path starts."""
    # One block of columns per (candidate, shift), grouped by shift so that each shift's cost
    # is one product over a contiguous run of columns; SEPARATOR infinite columns end each.
    block_piece = np.repeat(candidates, shifts.shape[1])
    block_shift = shifts.reshape(-1)
    order = np.argsort(block_shift, kind="stable")
    lengths = np.array([len(reference[piece]) + SEPARATOR for piece in block_piece[order]])
    firsts = np.r_[0, np.cumsum(lengths)[:-1]]
    gap = np.zeros((SEPARATOR, rolled.shape[-1]), np.float32)
    columns = np.concatenate([part for piece in block_piece[order] for part in (reference[piece], gap)])
    cost = np.empty((rolled.shape[1], len(columns)), np.float32)
    sorted_shift = block_shift[order]
    groups = np.flatnonzero(np.r_[True, sorted_shift[1:] != sorted_shift[:-1]])
    for group, end in zip(groups, [*groups[1:], len(order)]):
        first, stop = firsts[group], firsts[end - 1] + lengths[end - 1]
        cost[:, first:stop] = 1.0 - rolled[sorted_shift[group]] @ columns[first:stop].T
    separators = (firsts + lengths)[:, None] - np.arange(1, SEPARATOR + 1)[None, :]
    cost[:, separators.reshape(-1)] = np.inf
    mean_cost, start = subsequence_align(cost)
    # Each block's best end (its first column at the block's minimum), and where that path
    # starts within the piece.
    minima = np.minimum.reduceat(mean_cost, firsts)
    block_of = np.repeat(np.arange(len(order)), lengths)
    hits = np.flatnonzero(mean_cost == minima[block_of])
    ends = hits[np.unique(block_of[hits], return_index=True)[1]]
    block_cost, block_start = np.empty(len(order)), np.empty(len(order), np.int64)
    block_cost[order], block_start[order] = mean_cost[ends], start[ends] - firsts
    block_cost, block_start = block_cost.reshape(shifts.shape), block_start.reshape(shifts.shape)
    best = np.argmin(block_cost, axis=1)
    rows = np.arange(len(candidates))
    return block_cost[rows, best], block_start[rows, best].astype(np.int64)
