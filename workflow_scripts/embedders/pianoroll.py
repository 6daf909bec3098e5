"""``pianoroll``: the score's ceiling, pooled the way ``basic_pitch`` pools its posteriorgrams.

No audio, no weights, no GPU: the render stage keeps, per snippet, the notes the
synthesiser played (MIDI key after transposition, onset and offset in seconds; see
``workflow_scripts.plumbing.snippet_audio.NOTE_FIELDS``), and this embedder draws them on Basic
Pitch's frame grid (``posteriorgram``) as the three rolls Basic Pitch estimates:

- ``note``: 1 where a key sounds (onset <= frame time < offset);
- ``onset``: 1 at the frame nearest each note's start (a note held into the snippet from
  before it starts at the snippet's first frame, as the synthesiser re-attacks it there);
- ``contour``: the note roll again. Rendered notes hold one steady pitch, so the truth of
  Basic Pitch's pitch contour, folded to semitones, is the note roll; repeating it keeps
  layer ``i`` of both embedders the same quantity.

Each roll is pooled over the snippet (per key: mean, standard deviation), giving
(3, 176) per snippet. Keys outside the piano's 88 are left out, as Basic Pitch cannot
report them. The rolls ignore velocity, timbre and tuning: whatever separates two
renderings of a snippet here is the notes themselves (a transposition), never the sound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from workflow_scripts.embedders.base import EmbedderError, FrameEmbedder
from workflow_scripts.embedders.declaration import EmbedderDeclaration, PitchClassView
from workflow_scripts.embedders.posteriorgram import (
    FRAME_SECONDS,
    KEYS,
    LAYER_NAMES,
    LOWEST_KEY,
    POOLED_DIM,
    POOLING,
    frame_count,
    pool_rolls,
)

NOTE_COLUMNS = ("note_pitch", "note_onset_s", "note_offset_s")


def snippet_notes(manifest: pa.Table) -> list[np.ndarray]:
    """The notes of each snippet, as float64 arrays (notes, 3) of MIDI key, onset, offset (s)."""
    missing = [name for name in NOTE_COLUMNS if name not in manifest.column_names]
    if missing:
        raise EmbedderError(
            f"the manifest has no {missing} columns: it was rendered before the render stage kept the notes it "
            "played. Rerun the render stage for this piece (delete its .flac and .snippets.parquet)."
        )
    columns = [manifest.column(name).to_pylist() for name in NOTE_COLUMNS]
    return [np.array(list(zip(*notes)), dtype=np.float64).reshape(-1, 3) for notes in zip(*columns)]


def snippet_rolls(notes: np.ndarray, duration_s: float) -> np.ndarray:
    """(3, frames, 88) float32 note, onset and contour rolls of one snippet's notes."""
    frames = frame_count(duration_s)
    times = np.arange(frames) * FRAME_SECONDS
    note = np.zeros((frames, KEYS), np.float32)
    onset = np.zeros((frames, KEYS), np.float32)
    for pitch, start, stop in notes:
        key = int(pitch) - LOWEST_KEY
        if not 0 <= key < KEYS:
            continue
        note[(times >= start) & (times < stop), key] = 1.0
        first = int(round(start / FRAME_SECONDS))
        if first < frames:
            onset[first, key] = 1.0
    return np.stack([note, onset, note])


class PianorollEmbedder(FrameEmbedder):
    name = "pianoroll"
    batch_size = 64
    frame_rate, frame_layers, frame_dim = 1 / FRAME_SECONDS, len(LAYER_NAMES), KEYS

    def __init__(self, settings: dict[str, Any]):
        self.sample_rate = int(settings["sample_rate"])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_id": "pianoroll-of-played-notes",
            "revision": "1",
            "layers": len(LAYER_NAMES),
            "dim": POOLED_DIM,
            "sample_rate": self.sample_rate,
            "settings": {
                "layer_names": list(LAYER_NAMES),
                "contour": "the note roll (rendered notes hold a steady pitch)",
                "pooling": [f"{statistic} over frames, per key" for statistic in POOLING],
                "frame_seconds": FRAME_SECONDS,
                "keys": f"MIDI {LOWEST_KEY}-{LOWEST_KEY + KEYS - 1}",
                "source": "the notes the render stage played (manifest columns " + ", ".join(NOTE_COLUMNS) + ")",
            },
        }

    def read_clips(self, audio_path: Path, manifest: pa.Table) -> list[np.ndarray]:
        """Each snippet's rolls, from the manifest's notes; the audio file is never opened."""
        durations = [samples / self.sample_rate for samples in manifest.column("num_samples").to_pylist()]
        return [snippet_rolls(notes, duration) for notes, duration in zip(snippet_notes(manifest), durations)]

    def frames(self, clip: np.ndarray) -> np.ndarray:
        return clip  # read_clips already made the rolls

    def pool_frames(self, frames: np.ndarray) -> np.ndarray:
        return pool_rolls(frames)


DECLARATIONS = [
    EmbedderDeclaration(
        name="pianoroll",
        embedder=PianorollEmbedder,
        description=(
            "The played notes as Basic Pitch's three rolls, pooled the same way "
            "(see workflow_scripts/embedders/pianoroll.py). No settings."
        ),
        packages=("numpy", "pyarrow"),
        runtime_minutes=(15, 1),
        pitch_classes=PitchClassView(layer=LAYER_NAMES.index("note"), lowest_key=LOWEST_KEY),
    )
]
