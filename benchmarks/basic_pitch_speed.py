"""The basic_pitch embed job against Basic Pitch's model alone, on the same rendered snippets.

Times, in the same run and alternating:
- **stage**: ``embed_batch``, the function every embed job runs (it reads the FLAC, resamples
  to 22,050 Hz, runs the windows through the model, unwraps, folds and pools, and writes
  the shards), with an embedder already loaded;
- **model alone**: only ``session.run`` of nmp.onnx on the same snippets' windows, prepared
  beforehand, one window per call as ``basic_pitch.inference.run_inference`` does;
- **model alone, batched**: the same windows, one call per snippet (all its windows at
  once), to show whether batching the windows would buy anything on this CPU.

Seconds of audio per second count the snippets' own audio. The model sees more than that:
Basic Pitch's windows overlap by 30 frames and the last one is padded; the script prints
both counts.

    .venv/bin/python benchmarks/basic_pitch_speed.py --audio results/audio/piano --pieces 32
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from embed_throughput import all_clips, job_files, rendered_pieces

from workflow_scripts.embedders.basic_pitch import (
    INPUT_NAME,
    MODEL_SAMPLE_RATE,
    OUTPUT_NAMES,
    WINDOW_SAMPLES,
    BasicPitchEmbedder,
    model_windows,
    resample_to_model_rate,
)
from workflow_scripts.stages.embed import embed_batch

SETTINGS = {"threads": 1, "model_file": None, "model_sha256": None, "sample_rate": 24000}


def timed_stage(embedder, audio: Path, names: list[str], scratch: Path, logger) -> float:
    out = Path(tempfile.mkdtemp(dir=scratch))
    files = job_files(audio, names, out)
    started = time.perf_counter()
    embed_batch(files, "basic_pitch", SETTINGS, out / "cache", logger, embedder=embedder, reader_threads=1)
    return time.perf_counter() - started


def timed_model(session, windows_per_clip: list[np.ndarray], batched: bool) -> float:
    names = list(OUTPUT_NAMES.values())
    started = time.perf_counter()
    for windows in windows_per_clip:
        if batched:
            session.run(names, {INPUT_NAME: windows})
        else:
            for window in windows:
                session.run(names, {INPUT_NAME: window[None]})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=REPO_ROOT / "results/audio/piano")
    parser.add_argument("--pieces", type=int, default=32, help="one CPU embed job's worth (embed.pieces_per_job)")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logger = logging.getLogger("basic_pitch_speed")

    names = rendered_pieces(arguments.audio, arguments.pieces)
    clips = all_clips(arguments.audio, names)
    import soundfile

    SETTINGS["sample_rate"] = soundfile.info(str(arguments.audio / f"{names[0]}.flac")).samplerate
    embedder = BasicPitchEmbedder(SETTINGS)
    windows_per_clip = [model_windows(resample_to_model_rate(clip, SETTINGS["sample_rate"])) for clip in clips]
    audio_seconds = sum(clip.size for clip in clips) / SETTINGS["sample_rate"]
    window_seconds = sum(len(windows) for windows in windows_per_clip) * WINDOW_SAMPLES / MODEL_SAMPLE_RATE
    print(
        f"{len(names)} pieces, {len(clips)} snippets, {audio_seconds:.1f} s of audio; the model sees "
        f"{sum(len(w) for w in windows_per_clip)} windows, {window_seconds:.1f} s ({window_seconds / audio_seconds:.2f}x)"
    )

    best = {"stage": np.inf, "model alone": np.inf, "model alone, batched": np.inf}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(arguments.repeats):
            best["model alone"] = min(best["model alone"], timed_model(embedder.session, windows_per_clip, False))
            best["stage"] = min(best["stage"], timed_stage(embedder, arguments.audio, names, Path(scratch), logger))
            best["model alone, batched"] = min(
                best["model alone, batched"], timed_model(embedder.session, windows_per_clip, True)
            )
    for label, seconds in best.items():
        print(f"{label:22s} {seconds:7.2f} s  {audio_seconds / seconds:6.1f} s-audio/s")
    ratio = best["model alone"] / best["stage"]
    print(f"stage speed / model-alone speed: {ratio:.2f}x (best of {arguments.repeats} each)")


if __name__ == "__main__":
    main()
