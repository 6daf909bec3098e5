"""Identification of known music: query positions, the alignment, the matchers and the scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from workflow_scripts.embedders.declaration import PitchClassView
from workflow_scripts.identification import alignment
from workflow_scripts.identification.matching import (
    MATCHERS,
    Recordings,
    check_matchers,
    fit_projection,
    reference_windows,
)
from workflow_scripts.identification.queries import QuerySettings, cut_queries, start_fractions
from workflow_scripts.identification.reference import sliding_windows
from workflow_scripts.identification.scores import group_ranks, per_query_table, ranks, summary_figures
from workflow_scripts.plumbing.snippet_audio import MANIFEST_SCHEMA

RATE = 100  # samples per second of the synthetic manifests


def whole_manifest(piece: str, seconds: float, notes=((60, 0.0, 1.0), (64, 2.5, 4.0))) -> pa.Table:
    row = {
        "snippet_id": f"{piece}:000",
        "piece_id": piece,
        "snippet_index": 0,
        "first_measure": 0,
        "stop_measure": int(seconds // 2),
        "first_measure_number": 1,
        "last_measure_number": int(seconds // 2),
        "start_s": 0.0,
        "end_s": seconds,
        "sample_offset": 0,
        "num_samples": int(seconds * RATE),
        "note_pitch": [key for key, _, _ in notes],
        "note_onset_s": [onset for _, onset, _ in notes],
        "note_offset_s": [offset for _, _, offset in notes],
    }
    return pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA)


SETTINGS = QuerySettings(seconds=(2.0, 4.0), per_piece=3, seed=7, sample_rate=RATE)


def test_query_positions_depend_on_the_seed_and_the_piece_only():
    first = cut_queries(whole_manifest("bwv1.6", 30.0), list(np.arange(0, 31, 2.0)), SETTINGS)
    again = cut_queries(whole_manifest("bwv1.6", 30.0), list(np.arange(0, 31, 2.0)), SETTINGS)
    assert first.equals(again)
    # Adding pieces changes nothing: the generator is seeded by the piece id, not its place in a list.
    assert np.array_equal(start_fractions("bwv1.6", 7, 3), start_fractions("bwv1.6", 7, 3))
    assert not np.array_equal(start_fractions("bwv1.6", 7, 3), start_fractions("bwv2.6", 7, 3))
    assert not np.array_equal(start_fractions("bwv1.6", 7, 3), start_fractions("bwv1.6", 8, 3))


def test_every_length_starts_at_the_same_points_and_fits_the_piece():
    table = cut_queries(whole_manifest("p", 30.0), list(np.arange(0, 31, 2.0)), SETTINGS).to_pandas()
    two, four = table[table.num_samples == 200], table[table.num_samples == 400]
    assert len(two) == len(four) == 3
    assert np.array_equal(two.start_s.to_numpy(), four.start_s.to_numpy())
    assert (table.end_s <= 30.0).all() and (table.sample_offset + table.num_samples <= 3000).all()
    # A tempo deformation (the same piece twice as slow) moves a start in seconds, not in the music.
    slow = cut_queries(whole_manifest("p", 60.0), list(np.arange(0, 61, 4.0)), SETTINGS).to_pandas()
    fraction = two.start_s.to_numpy() / (30.0 - 4.0)
    assert np.allclose(slow.start_s.to_numpy()[:3] / (60.0 - 4.0), fraction, atol=1 / RATE)


def test_a_query_holds_the_notes_sounding_in_it_retimed_and_cut():
    settings = QuerySettings(seconds=(2.0,), per_piece=1, seed=0, sample_rate=RATE)
    table = cut_queries(whole_manifest("p", 4.0), [0.0, 2.0, 4.0], settings).to_pylist()[0]
    start = table["start_s"]
    assert 0.0 <= start <= 2.0
    for key, onset, offset in zip(table["note_pitch"], table["note_onset_s"], table["note_offset_s"]):
        assert 0.0 <= onset < offset <= 2.0 + 1e-9
        assert key in (60, 64)


def test_a_piece_shorter_than_every_query_gets_none_and_an_excluded_piece_none():
    assert cut_queries(whole_manifest("p", 1.0), [0.0, 1.0], SETTINGS).num_rows == 0
    assert cut_queries(MANIFEST_SCHEMA.empty_table(), [0.0], SETTINGS).num_rows == 0


def naive_alignment(cost: np.ndarray) -> np.ndarray:
    """The recursion written out cell by cell: the reference the vectorised code must match."""
    frames, columns = cost.shape
    accumulated = np.full((frames, columns), np.inf)
    accumulated[0] = cost[0]
    for frame in range(1, frames):
        for column in range(columns):
            previous = [accumulated[frame - 1, column - step] for step in (0, 1, 2) if column - step >= 0]
            accumulated[frame, column] = cost[frame, column] + min(previous)
    return accumulated[-1] / frames


def test_the_vectorised_alignment_equals_the_cell_by_cell_recursion():
    cost = np.random.default_rng(0).random((9, 40))
    cost[:, 17:19] = np.inf
    mean_cost, start = alignment.subsequence_align(cost)
    assert np.allclose(mean_cost, naive_alignment(cost), equal_nan=False)
    assert np.all(start <= np.arange(40)) and np.all(start >= np.arange(40) - 2 * 8)


def test_a_pitch_class_view_folds_a_roll_into_twelve_classes():
    summary = np.zeros((3, 2, 88), np.float32)
    summary[0, 0, 60 - 21] = 1.0  # middle C
    summary[0, 1, 72 - 21] = 0.5  # the C an octave up
    summary[0, 1, 67 - 21] = 0.25  # G
    folded = PitchClassView(layer=0, lowest_key=21).of(summary)
    assert folded.shape == (2, 12)
    assert folded[0, 0] == 1.0 and folded[1, 0] == 0.5 and folded[1, 7] == 0.25 and folded.sum() == 1.75
    assert np.array_equal(PitchClassView(layer=0, last_dims=12).of(np.ones((1, 3, 76)))[:, :], np.ones((3, 12)))
    with pytest.raises(ValueError, match="exactly one"):
        PitchClassView(layer=0)


def test_sliding_windows_are_exact_frame_means():
    means = np.arange(10, dtype=np.float32)[:, None]
    frames = np.array([2, 2, 2, 2, 2, 2, 2, 2, 2, 1])
    windows = sliding_windows(means, frames, 3)
    assert windows.shape == (8, 1)
    assert np.isclose(windows[0, 0], 1.0) and np.isclose(windows[-1, 0], (7 * 2 + 8 * 2 + 9) / 5)
    assert sliding_windows(means, frames, 50).shape == (1, 1)


HZ = 4.0


def synthetic_corpus(pieces: int = 12, frames: int = 120, seed: int = 0):
    """Pieces as random note sequences: per frame a chord of 3 pitch classes; the dims are the
    chroma (12) followed by 8 timbre-like dims, so every matcher has something to read."""
    rng = np.random.default_rng(seed)
    corpus = []
    for _ in range(pieces):
        chords = rng.integers(0, 12, size=(frames // 4, 3))
        chroma = np.zeros((frames, 12), np.float32)
        for frame in range(frames):
            chroma[frame, chords[frame // 4]] = 1.0
        corpus.append(chroma)
    return corpus


def as_key_roll(chroma: np.ndarray, octave: int = 3) -> np.ndarray:
    """(frames, 88) roll from MIDI key 21 with each sounding pitch class in one octave (C3 = 48)."""
    roll = np.zeros((len(chroma), 88), np.float32)
    roll[:, 12 * octave + 12 - 21 + np.arange(12)] = chroma
    return roll


def as_recordings(sequences, pieces, ids=None, rolls=None) -> Recordings:
    frames = [np.hstack([sequence, np.ones((len(sequence), 8), np.float32)]) for sequence in sequences]
    rolls = rolls or [as_key_roll(sequence) for sequence in sequences]
    return Recordings(
        ids=ids or list(pieces),
        pieces=list(pieces),
        frames=frames,
        counts=[np.full(len(sequence), 10) for sequence in sequences],
        chroma=[alignment.compressed(sequence, 10.0) for sequence in sequences],
        hz=HZ,
        keys=[alignment.compressed(roll, 10.0) for roll in rolls],
    )


MATCH_SETTINGS = {"shortlist": 5, "shortlist_shifts": 2, "shortlist_parts": 4, "shortlist_stretches": [0.8, 1.0, 1.25]}


@pytest.mark.parametrize("matcher", sorted(MATCHERS))
def test_every_matcher_finds_a_query_cut_from_its_own_reference_at_its_place(matcher):
    corpus = synthetic_corpus()
    names = [f"piece{index}" for index in range(len(corpus))]
    reference = as_recordings(corpus, names)
    starts = [10, 37, 70]
    queries = as_recordings([corpus[3][start : start + 32] for start in starts], ["piece3"] * 3)
    windows, owner, _ = reference_windows(reference, 8.0)
    projection = fit_projection(windows, owner)  # only cosine_lda reads it
    answers = MATCHERS[matcher](reference, queries, 8.0, {**MATCH_SETTINGS, "projection": projection})
    assert (np.argmax(answers.scores, axis=1) == 3).all()
    assert np.allclose(answers.start_s[:, 3], np.array(starts) / HZ, atol=1.0 / HZ)


def test_the_learned_projection_drops_what_varies_within_a_piece_and_carries_to_unseen_pieces():
    rng = np.random.default_rng(3)
    # Pieces differ in dims 0-3; dims 4-7 vary ten times more within a piece (the sound).
    means = np.hstack([rng.normal(size=(40, 4)), np.zeros((40, 4))])

    def samples(piece, count):
        return means[piece] + np.hstack([0.1 * rng.normal(size=(count, 4)), 10 * rng.normal(size=(count, 4))])

    seen = range(30)
    projection = fit_projection(np.vstack([samples(piece, 10) for piece in seen]), np.repeat(list(seen), 10))
    unseen = range(30, 40)
    reference, queries = (np.vstack([samples(piece, 1) for piece in unseen]) for _ in range(2))

    def nearest_is_own(transform):
        r, q = transform(reference), transform(queries)
        r, q = r / np.linalg.norm(r, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
        return float((np.argmax(q @ r.T, axis=1) == np.arange(len(q))).mean())

    assert nearest_is_own(projection) >= 0.9 and nearest_is_own(lambda x: x) < 0.5
    assert projection.matrix.shape == (8, 8)


@pytest.mark.parametrize("matcher", ["chroma_align", "roll_align"])
def test_the_key_invariant_alignment_finds_a_transposed_query(matcher):
    corpus = synthetic_corpus()
    names = [f"piece{index}" for index in range(len(corpus))]
    reference = as_recordings(corpus, names)
    for shift in (2, -3, 6):
        excerpt = corpus[5][40:72]
        query = as_recordings([np.roll(excerpt, shift, axis=1)], ["piece5"], rolls=[transposed(excerpt, shift)])
        answers = MATCHERS[matcher](reference, query, 8.0, MATCH_SETTINGS)
        assert np.argmax(answers.scores[0]) == 5
        assert abs(answers.start_s[0, 5] - 40 / HZ) <= 1.0 / HZ


def transposed(chroma: np.ndarray, semitones: int) -> np.ndarray:
    """``as_key_roll`` of ``chroma`` with every note moved ``semitones`` (octaves kept)."""
    roll = as_key_roll(chroma)
    moved = np.zeros_like(roll)
    if semitones >= 0:
        moved[:, semitones:] = roll[:, : 88 - semitones]
    else:
        moved[:, :semitones] = roll[:, -semitones:]
    return moved


def test_the_key_roll_alignment_tells_apart_voicings_a_folded_chroma_cannot():
    corpus = synthetic_corpus()
    names = [f"piece{index}" for index in range(len(corpus))] + ["piece5_low"]
    # One more piece: piece 5's chords, an octave lower. Its chroma is piece 5's.
    rolls = [as_key_roll(sequence) for sequence in corpus] + [as_key_roll(corpus[5], octave=2)]
    reference = as_recordings([*corpus, corpus[5]], names, rolls=rolls)
    query = as_recordings([corpus[5][40:72]], ["piece5"])
    rolled = MATCHERS["roll_align"](reference, query, 8.0, MATCH_SETTINGS).scores[0]
    folded = MATCHERS["chroma_align"](reference, query, 8.0, MATCH_SETTINGS).scores[0]
    assert np.argmax(rolled) == 5 and rolled[5] > rolled[-1] + 0.5
    assert np.isclose(folded[5], folded[-1])


def test_the_alignment_follows_a_faster_performance():
    corpus = synthetic_corpus()
    reference = as_recordings(corpus, [f"piece{index}" for index in range(len(corpus))])
    faster = corpus[7][20:84:2]  # twice as fast: every other frame
    answers = MATCHERS["chroma_align"](reference, as_recordings([faster], ["piece7"]), 8.0, MATCH_SETTINGS)
    # Within the chord it starts on (4 frames): any start inside one held chord costs the same.
    assert np.argmax(answers.scores[0]) == 7 and abs(answers.start_s[0, 7] - 20 / HZ) < 4 / HZ


def test_ranks_count_better_pieces_and_same_music_groups_count_as_correct():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.95]])
    truth = np.array([1, 1])
    assert ranks(scores, truth).tolist() == [2, 2]
    groups = np.array(["g", "g", "c"])  # pieces 0 and 1 are the same music
    assert group_ranks(scores, truth, groups).tolist() == [1, 2]


def test_figures_and_localisation_from_answers():
    class Answers:
        scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
        start_s = np.array([[4.0, 0.0], [0.0, 9.0], [1.0, 0.0]])

    measures = {"a": np.arange(0, 21, 2.0), "b": np.arange(0, 21, 2.0)}
    table = per_query_table(
        Answers,
        ["a:0", "b:0", "b:1"],
        ["a", "b", "b"],
        np.array([2.2, 1.0, 3.0]),
        ["a", "b"],
        measures,
        np.array(["a", "b"]),
    )
    assert table["rank"].tolist() == [1, 1, 2]
    assert table["localised"].tolist() == [True, False, False]  # b:0 matched at measure 4.5, not 1.0
    figures = summary_figures(table, resamples=50, seed=0)
    assert figures["top1"] == pytest.approx(2 / 3) and figures["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert figures["localised"] == pytest.approx(0.5) and figures["top5"] == 1.0


def test_an_unknown_matcher_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="chroma_align"):
        check_matchers(["cosine", "dtw"])


def test_an_embedder_without_a_pitch_class_view_skips_the_alignment_and_says_why():
    from workflow_scripts.stages.identify import usable_matchers

    assert usable_matchers("pianoroll", ["cosine", "chroma_align"]) == (["cosine", "chroma_align"], {})
    usable, skipped = usable_matchers("mert", ["cosine", "chroma_align"])
    assert usable == ["cosine"] and "pitch-class view" in skipped["chroma_align"]
    usable, skipped = usable_matchers("spectral", ["cosine", "cosine_lda"], can_learn=False)
    assert usable == ["cosine"] and "by_piece" in skipped["cosine_lda"]
    usable, skipped = usable_matchers("spectral", ["chroma_align", "roll_align"])
    assert usable == ["chroma_align"] and "not a roll of keys" in skipped["roll_align"]
    assert usable_matchers("basic_pitch", ["roll_align"]) == (["roll_align"], {})


def test_the_length_table_averages_deformations_and_leaves_out_the_reference_itself():
    from workflow_scripts.identification.report_section import length_table

    rows = pd.DataFrame(
        {
            "embedder": ["pianoroll"] * 6,
            "probe": ["chroma_align"] * 6,
            "variant": ["piano", "organ", "pianoUp2"] * 2,
            "train_variants": ["piano"] * 6,
            "query_seconds": [2.0] * 3 + [8.0] * 3,
            "top1": [1.0, 0.5, 0.7, 1.0, 0.9, 1.0],
        }
    )
    table = length_table(rows).set_index("embedder / matcher")
    assert table.loc["pianoroll / chroma_align", "mean top-1, 2 s"] == pytest.approx(0.6)
    assert table.loc["pianoroll / chroma_align", "worst top-1, 8 s"] == pytest.approx(0.9)


def same_chords_in_other_orders(pieces: int = 30, cycle: int = 8, frames: int = 160, hold: int = 4, seed: int = 1):
    """Pieces that each repeat one cycle of the same ``cycle`` chords in an order of their own,
    ``hold`` frames a chord: every window of one whole cycle holds every chord once, so every piece
    has windows with the same mean chroma, and only the order tells them apart."""
    rng = np.random.default_rng(seed)
    vocabulary = rng.integers(0, 12, size=(cycle, 3))
    corpus = []
    for _ in range(pieces):
        order = rng.permutation(cycle)
        chroma = np.zeros((frames, 12), np.float32)
        for frame in range(frames):
            chroma[frame, vocabulary[order[(frame // hold) % cycle]]] = 1.0
        corpus.append(chroma)
    return corpus


def stage_one_rank(corpus, query, truth, parts, stretches=(1.0,)):
    unit_chroma = [alignment.compressed(piece, 10.0) for piece in corpus]
    shortlister = alignment.Shortlister.of(unit_chroma, [np.ones(len(c)) for c in corpus], 32, parts, stretches)
    per_shift = shortlister.scores([alignment.compressed(query, 10.0)], [np.ones(len(query))])[0]
    order, shifts, _ = alignment.shortlisted(per_shift, len(corpus), 12)
    return int(np.flatnonzero(order == truth)[0]), shifts[list(order).index(truth)]


def test_one_part_is_the_windowed_mean_chroma_under_every_shift():
    corpus = synthetic_corpus()
    unit_chroma = [alignment.compressed(piece, 10.0) for piece in corpus]
    counts = [np.full(len(piece), 10) for piece in corpus]
    query = unit_chroma[4][17:49]
    per_shift = alignment.Shortlister.of(unit_chroma, counts, 32, 1, [1.0]).scores([query], [np.full(32, 10)])[0]
    mean = query.mean(axis=0) / np.linalg.norm(query.mean(axis=0))
    for piece, (chroma, count) in enumerate(zip(unit_chroma, counts)):
        windows = sliding_windows(chroma, count, 32)
        windows /= np.linalg.norm(windows, axis=1, keepdims=True)
        expected = [np.max(windows @ np.roll(mean, shift)) for shift in range(12)]
        assert np.allclose(per_shift[piece], expected, atol=1e-5)


@pytest.mark.parametrize("transpose", [0, 2, -3])
def test_the_order_aware_shortlist_tells_apart_pieces_the_mean_chroma_cannot(transpose):
    corpus = same_chords_in_other_orders()
    query = np.roll(corpus[11][40:72], transpose, axis=1)
    rank, shifts = stage_one_rank(corpus, query, 11, parts=4)
    assert rank == 0 and shifts[0] == (-transpose) % 12
    # The mean chroma ties every piece somewhere, so the true one is no better than a guess.
    assert stage_one_rank(corpus, query, 11, parts=1)[0] > 0


def test_the_shortlist_lines_up_a_slower_performance_at_its_stretch():
    corpus = same_chords_in_other_orders(frames=80, hold=2)
    ranks_at = {(1.0,): [], (0.8, 1.0, 1.25): []}
    for piece in range(6):
        slower = np.repeat(corpus[piece][20:80], 5, axis=0)[::4][:32]  # 1.25 times as long
        for stretches, found in ranks_at.items():
            found.append(stage_one_rank(corpus, slower, piece, parts=4, stretches=stretches)[0])
    assert ranks_at[(0.8, 1.0, 1.25)] == [0] * 6
    assert max(ranks_at[(1.0,)]) > 0  # without the stretch its parts drift off the reference's
