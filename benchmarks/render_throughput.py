"""Render-stage throughput against the FluidSynth command line, same MIDI, same SoundFont.

Exports N chorales to MIDI (music21, at the workflow's tempo), then renders the same
MIDI files twice on this machine:

- cli:   ``fluidsynth -ni -F out.wav -r 24000 -g GAIN -R 0 -C 0 SF2 piece.mid`` per file
         (a fresh process per piece, reverb and chorus off as in the stage);
- stage: ``render_batch`` on the MIDI files as a folder corpus, exactly what a render job
         runs (reading the MIDI file, snippet cutting, one synthesiser per snippet, FLAC and
         Parquet output), with an empty piece cache.

and ``whole``: the same ``render_batch`` rendering each piece as one continuous recording, as
the identification renderings do (``RenderSettings.whole_piece``). The three alternate for
``--repeats`` rounds on a fresh output folder each; it prints seconds of audio per second
for each round and the median ratio to the CLI with its range (target: stage >= cli).

    .venv/bin/python benchmarks/render_throughput.py --pieces 20 --repeats 5
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.music.synth import resolve_soundfont  # noqa: E402
from workflow_scripts.stages.corpus import discover_sources  # noqa: E402
from workflow_scripts.stages.render import RenderSettings, render_batch  # noqa: E402

TEMPO = 100.0
RATE = 24000
GAIN = 0.3


def export_midi(count: int, folder: Path) -> list[Path]:
    import music21

    sources = discover_sources({"source": "music21", "composer": "bach", "pieces": [], "max_pieces": count})
    paths = []
    for source in sources:
        score = music21.converter.parse(str(source.path))
        for part in score.parts:
            part.insert(0, music21.tempo.MetronomeMark(number=TEMPO))
        path = folder / f"{source.piece_id}.mid"
        score.write("midi", fp=path)
        paths.append(path)
    return paths


def time_cli(paths: list[Path], soundfont: Path, folder: Path) -> tuple[float, float]:
    executable = shutil.which("fluidsynth")
    if executable is None:
        raise SystemExit("the fluidsynth command is missing: apt-get install fluidsynth")
    started = time.perf_counter()
    for path in paths:
        subprocess.run(
            [
                executable,
                "-ni",
                "-q",
                "-F",
                str(folder / f"{path.stem}.wav"),
                "-r",
                str(RATE),
                "-g",
                str(GAIN),
                "-R",
                "0",
                "-C",
                "0",
                "-T",
                "wav",
                str(soundfont),
                str(path),
            ],
            check=True,
            capture_output=True,
        )
    seconds = time.perf_counter() - started
    audio = sum(soundfile.info(folder / f"{path.stem}.wav").duration for path in paths)
    return audio, seconds


def time_stage(paths: list[Path], soundfont: Path, folder: Path, whole_piece: bool = False) -> tuple[float, float]:
    settings = RenderSettings(
        sample_rate=RATE,
        tempo_qpm=TEMPO,
        window_measures=4,
        hop_measures=4,
        programs=(0,),
        velocity=90,
        transpose=0,
        gain=GAIN,
        whole_piece=whole_piece,
    )
    pieces = [
        {
            "piece_id": path.stem,
            "source": str(path),
            "audio": str(folder / f"{path.stem}.flac"),
            "manifest": str(folder / f"{path.stem}.snippets.parquet"),
        }
        for path in paths
    ]
    started = time.perf_counter()
    render_batch(pieces, settings, soundfont, folder / "cache", logging.getLogger("benchmark"))
    seconds = time.perf_counter() - started
    audio = sum(
        soundfile.info(piece["audio"]).duration for piece in pieces if Path(piece["audio"]).stat().st_size > 100
    )
    return audio, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    soundfont = resolve_soundfont(None)
    rates = {"cli": [], "stage": [], "whole": []}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "midi").mkdir()
        paths = export_midi(arguments.pieces, scratch / "midi")
        print(f"pieces: {len(paths)} MIDI files, SoundFont {soundfont}")
        for round_index in range(arguments.repeats):
            for name in rates:
                folder = scratch / f"{name}{round_index}"
                folder.mkdir()
                if name == "cli":
                    audio, seconds = time_cli(paths, soundfont, folder)
                else:
                    audio, seconds = time_stage(paths, soundfont, folder, whole_piece=name == "whole")
                rates[name].append(audio / seconds)
                print(
                    f"round {round_index + 1} {name:5}: {audio / seconds:8.1f} s-audio/s ({audio:.0f} s in {seconds:.1f} s)"
                )
                shutil.rmtree(folder)
    for name in ("stage", "whole"):
        ratios = [rate / cli for rate, cli in zip(rates[name], rates["cli"])]
        print(
            f"{name} / cli: median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
            f"over {len(ratios)} rounds (target >= 1.0)"
        )
    print("(stage: 4-measure snippets, so a short tail per piece is not rendered; whole: every piece in full)")


if __name__ == "__main__":
    main()
