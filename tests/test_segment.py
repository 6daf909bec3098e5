import numpy as np
import pytest
from conftest import music21_chorale

from workflow_scripts.segment import (
    NoteEvent,
    ScoreError,
    events_in_window,
    measure_windows,
    parse_score,
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
    events = [NoteEvent(0.0, 3.0, 60, 0), NoteEvent(1.0, 1.5, 62, 1), NoteEvent(2.5, 5.0, 64, 2), NoteEvent(4.0, 4.5, 65, 0)]
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
