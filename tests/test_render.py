from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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
