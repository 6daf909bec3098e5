"""The spectral embedder's job function against the same features computed the old way.

Times ``embed_batch`` (the function every embed job runs) with the spectral embedder on a
folder of rendered pieces, twice per round: as the workflow runs it (frames transformed in
one call per clip) and with ``transformers.audio_utils.spectrogram``'s loop over frames,
which the embedder used before. Checks that both write bitwise the same shards, and
prints seconds of audio per second for both and their ratio.

    .venv/bin/python benchmarks/spectral_speed.py --audio results/audio/piano --pieces 32
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from embed_throughput import job_files, rendered_pieces

from workflow_scripts.embedders.spectral import SpectralEmbedder
from workflow_scripts.stages.embed import embed_batch

SETTINGS = {"n_fft": 2048, "hop_length": 480, "n_mels": 64, "fmin": 30.0, "fmax": 8000.0, "sample_rate": 24000}


class LoopSpectralEmbedder(SpectralEmbedder):
    """The same features with transformers' frame-by-frame spectrogram (the previous implementation)."""

    def _power_spectrogram(self, clip: np.ndarray) -> np.ndarray:
        from transformers import audio_utils

        window = audio_utils.window_function(self.n_fft, "hann")
        return audio_utils.spectrogram(
            clip.astype(np.float32), window, frame_length=self.n_fft, hop_length=self.hop_length, power=2.0
        )


def timed_job(embedder, files, scratch: Path, logger) -> float:
    started = time.perf_counter()
    embed_batch(
        files, "spectral", SETTINGS, Path(tempfile.mkdtemp(dir=scratch)), logger, embedder=embedder, reader_threads=1
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=REPO_ROOT / "results/audio/piano")
    parser.add_argument("--pieces", type=int, default=32, help="one spectral job's worth (embed.pieces_per_job)")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    logger = logging.getLogger("chorale_id.benchmark")
    logger.propagate = False
    names = rendered_pieces(arguments.audio, arguments.pieces)
    audio_seconds = (
        sum(
            pq.read_table(arguments.audio / f"{name}.snippets.parquet").column("num_samples").to_numpy().sum()
            for name in names
        )
        / SETTINGS["sample_rate"]
    )
    times = {"vectorised (workflow)": [], "frame loop (before)": []}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        embedders = {
            "vectorised (workflow)": SpectralEmbedder(SETTINGS),
            "frame loop (before)": LoopSpectralEmbedder(SETTINGS),
        }
        for round_number in range(arguments.repeats):
            for label, embedder in embedders.items():
                files = job_files(arguments.audio, names, scratch / f"{label[:4]}-{round_number}")
                times[label].append(timed_job(embedder, files, scratch, logger))
        identical = all(
            pq.read_table(new.shard).column("embedding").equals(pq.read_table(old.shard).column("embedding"))
            for new, old in zip(
                job_files(arguments.audio, names, scratch / "vect-0"),
                job_files(arguments.audio, names, scratch / "fram-0"),
            )
        )
    print(f"{len(names)} pieces, {audio_seconds:.0f} s of audio; shards bitwise identical: {identical}")
    for label, values in times.items():
        print(
            f"{label:22s}: {audio_seconds / min(values):7.1f} s-audio/s (rounds: "
            + " ".join(f"{value:.2f}" for value in values)
            + " s)"
        )
    best_new, best_old = min(times["vectorised (workflow)"]), min(times["frame loop (before)"])
    print(f"speed-up: {best_old / best_new:.2f}x")


if __name__ == "__main__":
    main()
