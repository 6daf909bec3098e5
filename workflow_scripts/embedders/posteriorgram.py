"""What ``basic_pitch`` and ``pianoroll`` share: Basic Pitch's frame grid and one pooling.

Both describe a snippet as three 88-key rolls over time (note, onset, contour), on the
frame grid Basic Pitch's model outputs (hop 256 samples at 22,050 Hz, about 86 frames per
second; a snippet of ``s`` seconds has ``floor(s * 86)`` frames, as Basic Pitch trims its
output), and pool each roll the same way, so a layer of one sits beside the same layer of
the other in every table: the audio model's posteriorgram and the truth it estimates.
"""

from __future__ import annotations

import numpy as np

# Basic Pitch's constants (basic_pitch/constants.py of basic-pitch 0.4.0), restated here so
# nothing of the package is imported.
MODEL_SAMPLE_RATE = 22050
FFT_HOP = 256
ANNOTATIONS_FPS = MODEL_SAMPLE_RATE // FFT_HOP  # 86: the frame count Basic Pitch keeps per second
FRAME_SECONDS = FFT_HOP / MODEL_SAMPLE_RATE  # 11.6 ms between frames
KEYS = 88  # piano keys, A0 (MIDI 21) to C8 (MIDI 108)
LOWEST_KEY = 21
CONTOUR_BINS_PER_SEMITONE = 3
LAYER_NAMES = ("note", "onset", "contour")
POOLING = ("mean", "std")
POOLED_DIM = KEYS * len(POOLING)


def frame_count(duration_s: float) -> int:
    """Frames Basic Pitch keeps for audio of ``duration_s`` (its ``unwrap_output`` trim)."""
    return int(np.floor(duration_s * MODEL_SAMPLE_RATE * (ANNOTATIONS_FPS / MODEL_SAMPLE_RATE)))


def pool_rolls(rolls: np.ndarray) -> np.ndarray:
    """(layers, frames, 88) rolls to (layers, 176) float32: per key, mean then standard
    deviation over the snippet's frames (population), in float64 before rounding."""
    rolls = np.asarray(rolls, dtype=np.float64)
    if rolls.shape[1] == 0:
        return np.zeros((rolls.shape[0], POOLED_DIM), np.float32)
    return np.concatenate([rolls.mean(axis=1), rolls.std(axis=1)], axis=-1).astype(np.float32)


def fold_contour(contour: np.ndarray) -> np.ndarray:
    """(frames, 264) contour posteriorgram, 3 bins a semitone, to (frames, 88) semitones.

    Contour bin ``3k`` is centred on key ``k`` (Basic Pitch's ``midi_pitch_to_contour_bin``:
    bin 0 is 27.5 Hz), so key ``k`` takes the largest of bins ``3k - 1 .. 3k + 1``: the
    posterior that a pitch within a third of a semitone of the key sounds, on the note
    layer's scale.
    """
    frames, bins = contour.shape
    if bins != KEYS * CONTOUR_BINS_PER_SEMITONE:
        raise ValueError(f"a contour posteriorgram has {KEYS * CONTOUR_BINS_PER_SEMITONE} bins, not {bins}")
    padded = np.concatenate(
        [np.zeros((frames, 1), contour.dtype), contour, np.zeros((frames, 1), contour.dtype)], axis=1
    )
    around = np.stack([padded[:, offset : offset + bins : CONTOUR_BINS_PER_SEMITONE] for offset in range(3)])
    # Bins outside the 264 were padded with zero; a posterior is never below 0, so max is unaffected.
    return around.max(axis=0)
