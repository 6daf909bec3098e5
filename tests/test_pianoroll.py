"""``pianoroll``: the notes the render stage played, as Basic Pitch's three rolls, pooled."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from render_fixture import PIANO, render_jobs

from workflow_scripts.embedders import EmbedderError, build_embedder
from workflow_scripts.embedders.pianoroll import snippet_notes, snippet_rolls
from workflow_scripts.embedders.posteriorgram import FRAME_SECONDS, KEYS, frame_count
from workflow_scripts.music.synth import resolve_soundfont
from workflow_scripts.plumbing.embeddings_table import table_to_embeddings
from workflow_scripts.plumbing.snippet_audio import MANIFEST_SCHEMA, SNIPPET_SCHEMA
from workflow_scripts.stages.embed import PieceFiles, embed_batch
from workflow_scripts.stages.render import render_batch

C_MAJOR = (60, 64, 67)
RATE = PIANO.sample_rate


def one_chord_manifest(seconds: float = 2.0, pitches=C_MAJOR) -> pa.Table:
    row = {
        "snippet_id": "chord:000",
        "piece_id": "chord",
        "snippet_index": 0,
        "first_measure": 0,
        "stop_measure": 1,
        "first_measure_number": 1,
        "last_measure_number": 1,
        "start_s": 0.0,
        "end_s": seconds,
        "sample_offset": 0,
        "num_samples": int(seconds * RATE),
        "note_pitch": list(pitches),
        "note_onset_s": [0.0] * len(pitches),
        "note_offset_s": [seconds] * len(pitches),
    }
    return pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA)


def test_a_one_chord_snippet_has_its_known_vector():
    embedder = build_embedder("pianoroll", {"sample_rate": RATE})
    vectors = embedder.embed(embedder.read_clips(None, one_chord_manifest()))  # no audio file is opened
    assert vectors.shape == (1, 3, 2 * KEYS) and vectors.dtype == np.float32
    keys = [pitch - 21 for pitch in C_MAJOR]
    frames = frame_count(2.0)
    assert frames == 172  # floor(2 s * 86 frames/s), Basic Pitch's count for 2 s of audio
    expected_note = np.zeros(2 * KEYS, np.float32)
    expected_note[keys] = 1.0  # held the whole snippet: mean 1, standard deviation 0
    expected_onset = np.zeros(2 * KEYS, np.float32)
    expected_onset[keys] = 1 / frames  # one onset frame each
    expected_onset[[KEYS + key for key in keys]] = np.sqrt(1 / frames * (1 - 1 / frames))
    np.testing.assert_allclose(vectors[0, 0], expected_note, atol=1e-7)
    np.testing.assert_allclose(vectors[0, 1], expected_onset, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0, 2], vectors[0, 0])  # the contour's truth is the note roll


def test_rolls_follow_note_times_on_the_frame_grid():
    notes = np.array([[69, 0.5, 1.0], [20, 0.0, 1.0], [109, 0.0, 1.0]])  # A4, and two keys off the piano
    rolls = snippet_rolls(notes, 1.5)
    times = np.arange(rolls.shape[1]) * FRAME_SECONDS
    assert np.array_equal(np.flatnonzero(rolls[0, :, 69 - 21]), np.flatnonzero((times >= 0.5) & (times < 1.0)))
    assert np.flatnonzero(rolls[1, :, 69 - 21]).tolist() == [round(0.5 / FRAME_SECONDS)]
    assert rolls[0].sum() == rolls[0, :, 69 - 21].sum()  # keys 20 and 109 are not on the piano


def test_a_manifest_without_notes_names_the_fix():
    old = one_chord_manifest().select(SNIPPET_SCHEMA.names)
    with pytest.raises(EmbedderError, match="Rerun the render stage"):
        snippet_notes(old)


def test_the_render_stage_keeps_the_notes_it_played_transposed(chorale_folder, tmp_path):
    played = {}
    for transpose in (0, 2):
        settings = replace(PIANO, transpose=transpose)
        out = tmp_path / f"up{transpose}"
        [piece] = render_jobs({"bwv2.6": chorale_folder / "bwv2.6.mxl"}, out)
        render_batch([piece], settings, resolve_soundfont(None), tmp_path / "cache", logging.getLogger("test"))
        manifest = pq.read_table(piece["manifest"])
        notes = snippet_notes(manifest)
        assert len(notes) == manifest.num_rows and all(len(snippet) > 8 for snippet in notes)
        durations = manifest.column("end_s").to_numpy() - manifest.column("start_s").to_numpy()
        assert all(
            (snippet[:, 1] >= 0).all() and (snippet[:, 2] <= duration + 1e-9).all()
            for snippet, duration in zip(notes, durations)
        )
        played[transpose] = notes
    plain, raised = played[0], played[2]
    for low, high in zip(plain, raised):
        np.testing.assert_array_equal(high[:, 0], low[:, 0] + 2)  # what was played, not what was written
        np.testing.assert_array_equal(high[:, 1:], low[:, 1:])


def test_the_embed_stage_runs_pianoroll_without_reading_audio(chorale_folder, tmp_path):
    settings = PIANO
    out = tmp_path / "piano"
    [piece] = render_jobs({"bwv3.6": chorale_folder / "bwv3.6.mxl"}, out)
    render_batch([piece], settings, resolve_soundfont(None), tmp_path / "cache", logging.getLogger("test"))
    (out / "bwv3.6.flac").write_bytes(b"not audio")  # pianoroll must not need it
    files = PieceFiles(
        "bwv3.6", out / "bwv3.6.snippets.parquet", out / "bwv3.6.flac", tmp_path / "shards" / "bwv3.6.parquet"
    )
    stats = embed_batch(
        [files], "pianoroll", {"sample_rate": RATE}, tmp_path / "embed-cache", logging.getLogger("test")
    )
    assert stats.computed == 1 and stats.audio_seconds > 10
    vectors = table_to_embeddings(pq.read_table(files.shard), 3, 2 * KEYS)
    assert np.all(vectors[:, 0, :KEYS].sum(axis=1) > 0)
