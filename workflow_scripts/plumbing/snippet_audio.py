"""The files a rendered piece is made of: its audio (the snippets one after another) and
its snippet manifest (where each snippet's samples lie). Written by the render stage, read
by the embed stage and the catalog, which must not pull in the renderer to read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import soundfile

from workflow_scripts.plumbing.io_utils import atomic_path

AUDIO_SUBTYPE = "PCM_24"
# One row per snippet: where it lies in the piece and in the audio file (what the catalog gathers).
SNIPPET_SCHEMA = pa.schema(
    [
        ("snippet_id", pa.string()),
        ("piece_id", pa.string()),
        ("snippet_index", pa.int32()),
        ("first_measure", pa.int32()),
        ("stop_measure", pa.int32()),
        ("first_measure_number", pa.int32()),
        ("last_measure_number", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("sample_offset", pa.int64()),
        ("num_samples", pa.int64()),
    ]
)
# The notes the synthesiser played in each snippet (MIDI key after transposition; onset and
# offset in seconds from the snippet's start, cut at its edges), so score-side embedders
# (pianoroll) need no audio. Kept in the manifest itself: no extra file per piece.
NOTE_FIELDS = [
    ("note_pitch", pa.list_(pa.int16())),
    ("note_onset_s", pa.list_(pa.float64())),
    ("note_offset_s", pa.list_(pa.float64())),
]
MANIFEST_SCHEMA = pa.schema([*SNIPPET_SCHEMA, *NOTE_FIELDS])


def write_audio(audio: np.ndarray, sample_rate: int, destination: Path) -> int:
    """Write 24-bit FLAC; returns how many samples had to be clipped to [-1, 1]."""
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    with atomic_path(destination) as temporary:
        soundfile.write(temporary, np.clip(audio, -1.0, 1.0), sample_rate, subtype=AUDIO_SUBTYPE, format="FLAC")
    return clipped


def read_snippet_audio(audio_path: str | Path, manifest: pa.Table) -> list[np.ndarray]:
    """The snippets of a rendered piece, as float32 arrays in manifest order."""
    if manifest.num_rows == 0:  # an excluded piece: its audio file holds no frames
        return []
    audio, _ = soundfile.read(audio_path, dtype="float32", always_2d=False)
    offsets = manifest.column("sample_offset").to_pylist()
    lengths = manifest.column("num_samples").to_pylist()
    return [audio[offset : offset + length] for offset, length in zip(offsets, lengths)]
