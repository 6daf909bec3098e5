"""The time summary an embedder keeps beside its own vector: window means of its frames.

Window ``w`` of a snippet holds the frames whose start times lie in ``[w, w + 1) / hz``
seconds; its mean is taken in float64 and stored in float16, with the window's frame count,
so the frame mean of any run of windows is exact up to that rounding. At the default 2 Hz,
MERT-95M's 13 layers of 768 take 40 kB per second of audio (0.53 GB for the 410
chorales' 12,810 s at the default segmentation: 26,636 windows). workflow_scripts/pooling turns summaries into vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUMMARY_DTYPE = np.float16


@dataclass
class TimeSummary:
    means: np.ndarray  # (layers, windows, dim) float16
    frames: np.ndarray  # (windows,) int32, every one > 0

    def __post_init__(self) -> None:
        if self.means.shape[1] != len(self.frames):
            raise ValueError(f"a time summary of {self.means.shape[1]} windows has {len(self.frames)} frame counts")


def window_of_frames(frame_count: int, frame_rate: float, summary_hz: float) -> np.ndarray:
    """(frames,) window index of each frame, frame ``f`` starting at ``f / frame_rate`` s."""
    times = np.arange(frame_count) / frame_rate
    # A hair of tolerance so a frame on a window boundary (f / rate * hz integral) lands after it, whatever the rounding.
    return np.floor(times * summary_hz + 1e-9).astype(np.int64)


def summarise_frames(frames: np.ndarray, frame_rate: float, summary_hz: float) -> TimeSummary:
    """(layers, frames, dim) frame features -> their window means and counts."""
    layers, count, dim = frames.shape
    if count == 0:
        return TimeSummary(np.zeros((layers, 0, dim), SUMMARY_DTYPE), np.zeros(0, np.int32))
    window = window_of_frames(count, frame_rate, summary_hz)
    # Frame times rise, so each window's frames are one run: sum the runs at their starts.
    starts = np.flatnonzero(np.r_[True, window[1:] != window[:-1]])
    sums = np.add.reduceat(np.asarray(frames, np.float64), starts, axis=1)
    return from_window_sums(sums, np.diff(np.r_[starts, count]))


def from_window_sums(sums: np.ndarray, counts: np.ndarray) -> TimeSummary:
    """Window sums (layers, windows, dim) and frame counts, as a model accumulates them, to a summary."""
    kept = counts > 0
    means = np.asarray(sums, np.float64)[:, kept] / counts[kept][None, :, None]
    return TimeSummary(means.astype(SUMMARY_DTYPE), counts[kept].astype(np.int32))
