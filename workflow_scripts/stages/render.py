"""Render stage: each piece's snippets to one 24 kHz mono audio file plus a manifest.

A job renders a batch of pieces (one process, one SoundFont load). Per piece it writes
``{piece}.flac`` (the snippets one after another, 24-bit) and ``{piece}.snippets.parquet``
(one row per snippet: measures, times, where its samples lie in the audio file, and the
notes the synthesiser played in it).
A score that cannot be rendered is recorded as excluded, with the reason, in an empty
manifest; the other pieces of the batch are not affected. "Cannot be rendered" means
anything that belongs to the one file (music21 or mido failing on it, an element the
parser did not expect): the reason names the exception, and the job log has its
traceback. What is not about one file (no SoundFont, FluidSynth not loadable, a full
disk) fails the job with its own message, since every other piece would fail the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from workflow_scripts.music.segment import ScoreError, events_in_window, parse_score, snippet_windows
from workflow_scripts.music.synth import FluidSynthRenderer, played_notes
from workflow_scripts.music.tune_books import abc_tune_sha256
from workflow_scripts.plumbing.batch_index import write_batch_index
from workflow_scripts.plumbing.code_graph import module_digest
from workflow_scripts.plumbing.io_utils import sha256_file, write_parquet_atomic
from workflow_scripts.plumbing.job_log import Progress, job_logger
from workflow_scripts.plumbing.piece_cache import PieceCache
from workflow_scripts.plumbing.provenance import package_versions, provenance_record
from workflow_scripts.plumbing.snippet_audio import MANIFEST_SCHEMA, write_audio


@dataclass(frozen=True)
class RenderSettings:
    sample_rate: int
    tempo_qpm: float
    window_measures: int
    hop_measures: int
    programs: tuple[int, ...]
    velocity: int
    transpose: int
    gain: float
    # An identification rendering: the whole piece as one recording (one "snippet"), as a
    # performance would be, instead of the segmentation's snippets.
    whole_piece: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RenderSettings:
        return cls(
            sample_rate=int(params["sample_rate"]),
            tempo_qpm=float(params["tempo_qpm"]),
            window_measures=int(params["window_measures"]),
            hop_measures=int(params["hop_measures"]),
            programs=tuple(int(program) for program in params["programs"]),
            velocity=int(params["velocity"]),
            transpose=int(params["transpose"]),
            gain=float(params["gain"]),
            whole_piece=bool(params.get("whole_piece", False)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


def snippet_id(piece_id: str, index: int) -> str:
    return f"{piece_id}:{index:03d}"


def source_sha256(source: Path, tune_index: int | None) -> str:
    """What the piece's render depends on: the file, or one tune of a tune book."""
    if tune_index is None:
        return sha256_file(source)
    try:
        return abc_tune_sha256(source, tune_index)
    except IndexError:  # the book lost that tune since the run was planned: render_piece says so
        return ""


def render_piece(
    source: Path,
    piece_id: str,
    settings: RenderSettings,
    renderer: FluidSynthRenderer,
    tune_index: int | None = None,
):
    """Audio, manifest table and piece facts for one score; raises ScoreError to exclude it."""
    score = parse_score(source, settings.tempo_qpm, tune_index)
    if settings.whole_piece:
        windows = snippet_windows(score, score.measures, score.measures)
    else:
        windows = snippet_windows(score, settings.window_measures, settings.hop_measures)
    if not windows:
        raise ScoreError(
            f"the score has {score.measures} measures, fewer than one window of "
            f"{settings.window_measures} (segmentation.window_measures)"
        )
    clips, rows, offset = [], [], 0
    for window in windows:
        events = events_in_window(score.events, window.start_s, window.end_s)
        played = played_notes(events, settings.transpose)
        clip = renderer.render(
            events,
            window.end_s - window.start_s,
            settings.programs,
            settings.velocity,
            settings.transpose,
        )
        rows.append(
            {
                "snippet_id": snippet_id(piece_id, window.index),
                "piece_id": piece_id,
                "snippet_index": window.index,
                "first_measure": window.first_measure,
                "stop_measure": window.stop_measure,
                "first_measure_number": window.first_measure_number,
                "last_measure_number": window.last_measure_number,
                "start_s": window.start_s,
                "end_s": window.end_s,
                "sample_offset": offset,
                "num_samples": len(clip),
                "note_pitch": [key for _, key in played],
                "note_onset_s": [event.onset_s for event, _ in played],
                "note_offset_s": [event.offset_s for event, _ in played],
            }
        )
        clips.append(clip)
        offset += len(clip)
    audio = np.concatenate(clips)
    facts = {
        "title": score.title,
        "key": score.key,
        "parts": score.parts,
        "measures": score.measures,
        "duration_s": round(score.duration_s, 6),
        "snippets": len(rows),
        "peak": float(np.max(np.abs(audio))) if audio.size else 0.0,
        "unpitched_skipped": score.unpitched_skipped,
        # For the corpus audit: which pieces are the same music or the same tune.
        "voice_pitches": score.voice_pitches,
        # Where each measure starts (and, last, where the piece ends): what turns a time in the
        # recording into a position in the score (the identification queries' measures).
        "measure_starts_s": [round(float(start), 6) for start in score.measure_starts_s],
    }
    return audio, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), facts


def render_batch(
    pieces: list[dict[str, str]],
    settings: RenderSettings,
    soundfont: Path,
    cache_root: Path,
    logger,
) -> dict[str, int]:
    """Render each ``{"piece_id", "source", "audio", "manifest"}`` of a batch (and
    ``"tune_index"`` for a tune of a tune book); returns counts."""
    soundfont_sha256 = sha256_file(soundfont)
    cache = PieceCache(cache_root, "render")
    counts = {"computed": 0, "restored": 0, "excluded": 0}
    progress = Progress(len(pieces), "piece")
    renderer = None
    try:
        for number, piece in enumerate(pieces, start=1):
            source = Path(piece["source"])
            outputs = {"flac": Path(piece["audio"]), "snippets.parquet": Path(piece["manifest"])}
            tune_index = piece.get("tune_index")
            digest = source_sha256(source, tune_index)
            key = cache.key(
                {
                    "piece_id": piece["piece_id"],
                    "source_sha256": digest,
                    "settings": settings.as_dict(),
                    "soundfont_sha256": soundfont_sha256,
                    "code": module_digest(__name__),
                }
            )
            if cache.restore(key, outputs):
                counts["restored"] += 1
                logger.info("%s %s: unchanged, restored from cache", progress(number), piece["piece_id"])
                continue
            if renderer is None:
                renderer = FluidSynthRenderer(soundfont, settings.sample_rate, settings.gain)
            started = time.perf_counter()
            provenance = provenance_record(
                "render",
                settings.as_dict(),
                piece_id=piece["piece_id"],
                source=str(source),
                source_sha256=digest,
                tune_index=tune_index,
                soundfont={"path": str(soundfont), "sha256": soundfont_sha256},
                libraries=package_versions("music21", "pyfluidsynth", "soundfile"),
            )
            try:
                audio, manifest, facts = render_piece(source, piece["piece_id"], settings, renderer, tune_index)
                provenance.update(status="ok", reason="", piece=facts)
            except ScoreError as error:
                audio, manifest = np.zeros(0, dtype=np.float32), MANIFEST_SCHEMA.empty_table()
                provenance.update(status="excluded", reason=str(error), piece={})
                counts["excluded"] += 1
                # The traceback of what the parser raised, for whoever mends the file.
                logger.warning("%s excluded: %s (%s)", piece["piece_id"], error, source, exc_info=error.__cause__)
            provenance["clipped_samples"] = write_audio(audio, settings.sample_rate, outputs["flac"])
            write_parquet_atomic(manifest, outputs["snippets.parquet"], provenance)
            cache.store(key, outputs)
            counts["computed"] += 1
            logger.info(
                "%s %s: %d snippets, %.1f s of audio in %.2f s",
                progress(number),
                piece["piece_id"],
                manifest.num_rows,
                len(audio) / settings.sample_rate,
                time.perf_counter() - started,
            )
    finally:
        if renderer is not None:
            renderer.close()
    return counts


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    logger = job_logger("render", snakemake.log[0])
    pieces = [
        {"piece_id": piece_id, "source": source, "tune_index": tune_index, "audio": audio, "manifest": manifest}
        for piece_id, source, tune_index, audio, manifest in zip(
            snakemake.params.pieces,
            snakemake.params.sources,
            snakemake.params.tunes,
            snakemake.output.audio,
            snakemake.output.manifests,
        )
    ]
    counts = render_batch(
        pieces,
        RenderSettings.from_params(snakemake.params.settings),
        Path(snakemake.params.soundfont),
        Path(snakemake.params.cache),
        logger,
    )
    logger.info("batch done: %s", counts)
    write_batch_index(
        snakemake.output.index,
        "render",
        [{"piece_id": piece["piece_id"], "audio": piece["audio"], "manifest": piece["manifest"]} for piece in pieces],
    )
