import numpy as np
import pytest
from conftest import music21_chorale

from workflow_scripts.music.segment import (
    NoteEvent,
    ScoreError,
    events_in_window,
    measure_windows,
    parse_midi,
    parse_score,
    parse_with_music21,
    snippet_windows,
)


@pytest.mark.parametrize(
    ("measures", "window", "hop", "expected"),
    [
        (10, 4, 4, [(0, 4), (4, 8)]),
        (8, 4, 4, [(0, 4), (4, 8)]),
        (8, 4, 2, [(0, 4), (2, 6), (4, 8)]),
        (3, 4, 4, []),
        (5, 2, 3, [(0, 2), (3, 5)]),
    ],
)
def test_measure_windows(measures, window, hop, expected):
    assert measure_windows(measures, window, hop) == expected


def test_measure_windows_reject_non_positive_sizes():
    with pytest.raises(ValueError, match="at least 1"):
        measure_windows(8, 0, 1)


def test_events_in_window_keep_held_notes_and_cut_at_edges():
    events = [
        NoteEvent(0.0, 3.0, 60, 0),
        NoteEvent(1.0, 1.5, 62, 1),
        NoteEvent(2.5, 5.0, 64, 2),
        NoteEvent(4.0, 4.5, 65, 0),
    ]
    clipped = events_in_window(events, 1.0, 3.0)
    assert clipped == [NoteEvent(0.0, 2.0, 60, 0), NoteEvent(0.0, 0.5, 62, 1), NoteEvent(1.5, 2.0, 64, 2)]


def test_parse_real_chorale():
    score = parse_score(music21_chorale("bwv2.6"), tempo_qpm=120)
    assert score.parts == 4
    assert score.measures == len(score.measure_numbers) == len(score.measure_starts_s) - 1
    assert np.all(np.diff(score.measure_starts_s) > 0)
    assert all(0 <= event.onset_s < event.offset_s <= score.duration_s + 1e-9 for event in score.events)
    windows = snippet_windows(score, 4, 4)
    assert len(windows) == score.measures // 4
    assert windows[0].start_s == 0.0 and windows[1].start_s == pytest.approx(windows[0].end_s)


def test_tempo_scales_time():
    slow = parse_score(music21_chorale("bwv2.6"), tempo_qpm=60)
    fast = parse_score(music21_chorale("bwv2.6"), tempo_qpm=120)
    assert slow.duration_s == pytest.approx(2 * fast.duration_s)


def test_unparseable_and_empty_scores_say_why(tmp_path):
    garbage = tmp_path / "broken.xml"
    garbage.write_text("<score-partwise><part id='P1'><measure")
    with pytest.raises(ScoreError, match="could not parse"):
        parse_score(garbage, 100)

    import music21

    empty = music21.stream.Score([music21.stream.Part([music21.stream.Measure([music21.note.Rest(quarterLength=4)])])])
    path = tmp_path / "rests.musicxml"
    empty.write("musicxml", fp=path)
    with pytest.raises(ScoreError, match="no notes"):
        parse_score(path, 100)


def test_midi_is_read_directly_and_agrees_with_music21(tmp_path):
    import music21

    midi = tmp_path / "bwv2.6.mid"
    music21.converter.parse(music21_chorale("bwv2.6")).write("midi", fp=midi)
    direct, through_music21 = parse_score(midi, 100), parse_with_music21(midi, 100)
    assert direct.parts == through_music21.parts == 4
    assert direct.measures == through_music21.measures
    np.testing.assert_allclose(direct.measure_starts_s, through_music21.measure_starts_s, atol=1e-6)
    assert len(direct.events) == len(through_music21.events)
    # music21 quantises MIDI onsets; the direct reader keeps the file's ticks.
    assert max(abs(a.onset_s - b.onset_s) for a, b in zip(direct.events, through_music21.events)) < 0.05
    assert [a.key for a in direct.events] == [b.key for b in through_music21.events]
    assert direct.voice_pitches == through_music21.voice_pitches


def write_midi(path, tracks, ticks_per_beat=480):
    import mido

    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        midi.tracks.append(mido.MidiTrack(messages))
    midi.save(path)
    return path


def test_midi_bar_lines_follow_time_signature_changes(tmp_path):
    import mido

    conductor = [
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
        mido.MetaMessage("key_signature", key="Bb", time=0),
        mido.MetaMessage("time_signature", numerator=2, denominator=4, time=2 * 3 * 480),  # after two bars of 3/4
    ]
    # One note per quarter for 10 quarters; a note-on at velocity 0 ends each note.
    notes = []
    for index in range(10):
        notes += [
            mido.Message("note_on", note=60 + index, velocity=80, time=0),
            mido.Message("note_on", note=60 + index, velocity=0, time=480),
        ]
    score = parse_midi(write_midi(tmp_path / "changes.mid", [conductor, notes]), tempo_qpm=60)
    # Bars: 3/4 at 0 and 3 s, then 2/4 at 6 and 8 s; the notes end at 10 s.
    np.testing.assert_allclose(score.measure_starts_s, [0, 3, 6, 8, 10])
    assert score.measure_numbers == [1, 2, 3, 4] and score.key == "B- major" and score.parts == 1
    assert [event.key for event in score.events] == list(range(60, 70))
    assert score.events[3].onset_s == pytest.approx(3.0) and score.events[3].offset_s == pytest.approx(4.0)


def test_bad_midi_files_say_why(tmp_path):
    import mido

    garbage = tmp_path / "broken.mid"
    garbage.write_bytes(b"MThd not really")
    with pytest.raises(ScoreError, match="could not read the MIDI file"):
        parse_score(garbage, 100)
    silent = write_midi(
        tmp_path / "silent.mid", [[mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)]]
    )
    with pytest.raises(ScoreError, match="no notes"):
        parse_score(silent, 100)


def test_an_empty_chord_and_unpitched_notes_are_skipped_and_counted():
    import music21

    from workflow_scripts.music.segment import score_from_music21

    measure = music21.stream.Measure(number=1)
    measure.append(
        [music21.note.Note("C4"), music21.chord.Chord([]), music21.note.Unpitched(), music21.note.Note("E4")]
    )
    score = score_from_music21(music21.stream.Score([music21.stream.Part([measure])]), 60, default_title="made here")
    assert [event.key for event in score.events] == [60, 64]
    assert score.unpitched_skipped == 2 and score.voice_pitches == [[60, 64]] and score.title == "made here"
