from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from render_fixture import PIANO, render_jobs

from workflow_scripts.music.synth import resolve_soundfont
from workflow_scripts.plumbing.io_utils import read_provenance
from workflow_scripts.plumbing.snippet_audio import MANIFEST_SCHEMA, read_snippet_audio
from workflow_scripts.stages.render import render_batch


def batch(folder: Path, out: Path, names):
    return render_jobs({name: next(folder.glob(f"{name}.*")) for name in names}, out)


def test_render_batch_writes_audio_and_manifest(chorale_folder, tmp_path, logger):
    pieces = batch(chorale_folder, tmp_path / "out", ["bwv2.6", "bwv3.6"])
    counts = render_batch(pieces, PIANO, resolve_soundfont(None), tmp_path / "cache", logger)
    assert counts == {"computed": 2, "restored": 0, "excluded": 0}
    for piece in pieces:
        manifest = pq.read_table(piece["manifest"])
        assert manifest.schema.remove_metadata() == MANIFEST_SCHEMA
        assert manifest.num_rows >= 2
        info = soundfile.info(piece["audio"])
        assert info.samplerate == 24000 and info.channels == 1
        assert info.frames == sum(manifest.column("num_samples").to_pylist())
        snippets = read_snippet_audio(piece["audio"], manifest)
        assert all(np.abs(clip).max() > 0.01 for clip in snippets)
        provenance = read_provenance(piece["manifest"])
        assert provenance["status"] == "ok"
        assert len(provenance["soundfont"]["sha256"]) == 64
        assert provenance["settings"]["tempo_qpm"] == 120
        assert provenance["code"]["source_digest"]


def test_rerun_restores_from_cache_with_identical_bytes(chorale_folder, tmp_path, logger):
    first = batch(chorale_folder, tmp_path / "first", ["bwv3.6"])
    render_batch(first, PIANO, resolve_soundfont(None), tmp_path / "cache", logger)
    second = batch(chorale_folder, tmp_path / "second", ["bwv3.6"])
    counts = render_batch(second, PIANO, resolve_soundfont(None), tmp_path / "cache", logger)
    assert counts["restored"] == 1 and counts["computed"] == 0
    for key in ("audio", "manifest"):
        assert Path(first[0][key]).read_bytes() == Path(second[0][key]).read_bytes()


def test_rendering_is_deterministic_without_the_cache(chorale_folder, tmp_path, logger):
    outputs = []
    for run in ("a", "b"):
        pieces = batch(chorale_folder, tmp_path / run, ["bwv3.6"])
        render_batch(pieces, PIANO, resolve_soundfont(None), tmp_path / f"cache-{run}", logger)
        outputs.append(Path(pieces[0]["audio"]).read_bytes())
    assert outputs[0] == outputs[1]


def test_a_broken_score_is_excluded_and_the_rest_complete(chorale_folder, tmp_path, logger):
    (chorale_folder / "broken.xml").write_text("this is not MusicXML")
    pieces = batch(chorale_folder, tmp_path / "out", ["broken", "bwv3.6"])
    counts = render_batch(pieces, PIANO, resolve_soundfont(None), tmp_path / "cache", logger)
    assert counts["excluded"] == 1 and counts["computed"] == 2
    broken = read_provenance(pieces[0]["manifest"])
    assert broken["status"] == "excluded" and "could not parse" in broken["reason"]
    assert pq.read_table(pieces[0]["manifest"]).num_rows == 0
    assert read_provenance(pieces[1]["manifest"])["status"] == "ok"


def test_a_piece_shorter_than_one_window_is_excluded_with_the_reason(chorale_folder, tmp_path, logger):
    long_windows = replace(PIANO, window_measures=64)
    pieces = batch(chorale_folder, tmp_path / "out", ["bwv3.6"])
    render_batch(pieces, long_windows, resolve_soundfont(None), tmp_path / "cache", logger)
    assert "fewer than one window" in read_provenance(pieces[0]["manifest"])["reason"]


def music21_demo(name: str) -> Path:
    from workflow_scripts.stages.corpus import music21_corpus_folder

    return music21_corpus_folder("demos") / name


def test_unpitched_notes_are_skipped_and_counted_and_a_drum_part_alone_is_excluded(chorale_folder, tmp_path, logger):
    """music21's own drum sample (unpitched percussion only) once stopped the whole batch."""
    sources = {"drums": music21_demo("drum_sample.xml"), "bwv3.6": chorale_folder / "bwv3.6.mxl"}
    pieces = render_jobs(sources, tmp_path / "out")
    counts = render_batch(pieces, PIANO, resolve_soundfont(None), tmp_path / "cache", logger)
    assert counts == {"computed": 2, "restored": 0, "excluded": 1}
    drums = read_provenance(pieces[0]["manifest"])
    assert drums["status"] == "excluded"
    assert "no notes with a pitch (32 unpitched notes or empty chords skipped)" in drums["reason"]
    chorale = read_provenance(pieces[1]["manifest"])
    assert chorale["status"] == "ok" and chorale["piece"]["unpitched_skipped"] == 0


def test_an_unexpected_error_from_one_score_excludes_that_piece_with_its_type(chorale_folder, tmp_path, logger, caplog):
    """A tune book edited after the run was planned: its tune 5 is gone, and reading it raises IndexError."""
    import logging

    book = tmp_path / "book.abc"
    book.write_text("X:1\nT:Only tune\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|cBAG|FEDC|]\n", encoding="utf-8")
    pieces = render_jobs({"book_tune5": book, "book_tune1": book, "bwv3.6": chorale_folder / "bwv3.6.mxl"}, tmp_path)
    pieces[0]["tune_index"], pieces[1]["tune_index"] = 4, 0
    with caplog.at_level(logging.WARNING):
        counts = render_batch(pieces, PIANO, resolve_soundfont(None), tmp_path / "cache", logger)
    assert counts["excluded"] == 1 and counts["computed"] == 3
    reason = read_provenance(pieces[0]["manifest"])["reason"]
    assert reason.startswith("reading the score failed: IndexError:") and "tune 4" in reason
    assert "Traceback" in caplog.text  # the job log keeps where it was raised
    tune = read_provenance(pieces[1]["manifest"])
    assert tune["status"] == "ok" and tune["tune_index"] == 0 and tune["piece"]["title"] == "Only tune"


def test_a_missing_soundfont_fails_the_job_naming_it(chorale_folder, tmp_path, logger):
    pieces = batch(chorale_folder, tmp_path / "out", ["bwv3.6"])
    with pytest.raises(FileNotFoundError, match="no-such.sf2"):
        render_batch(pieces, PIANO, tmp_path / "no-such.sf2", tmp_path / "cache", logger)


def test_an_excluded_scores_traceback_goes_to_the_job_log_not_the_terminal(tmp_path, capsys):
    from workflow_scripts.plumbing.job_log import job_logger

    logger = job_logger("render", tmp_path / "render.log")
    try:
        raise ValueError("an odd element")
    except ValueError as error:
        logger.warning("piece x excluded: %s", error, exc_info=error)
    logger.error("a failing job keeps its traceback on the terminal", exc_info=ValueError("boom"))
    job_logger("render", None)  # closes the log file
    terminal, log = capsys.readouterr().err, (tmp_path / "render.log").read_text()
    assert "piece x excluded: an odd element (traceback in the job log)" in terminal
    assert terminal.count("Traceback") == 0 and "ValueError: boom" in terminal
    assert "Traceback (most recent call last)" in log and "raise ValueError" in log
