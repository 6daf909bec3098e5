"""``mean_std``: the frame mean, then the standard deviation over the snippet's windows.

The spread is of the window means (how the music moves at the summary's rate, 0.5 s by
default), weighted by frames, not of single frames: that would need a second moment per
window, doubling the summary for the one pooling that reads it."""

import numpy as np

from workflow_scripts.pooling import Pooling, weighted_mean


def mean_and_spread(means: np.ndarray, frames: np.ndarray) -> np.ndarray:
    mean = weighted_mean(means, frames)
    weights = frames.astype(np.float64) / max(frames.sum(), 1)
    variance = np.einsum("lwd,w->ld", (means.astype(np.float64) - mean[:, None, :]) ** 2, weights)
    return np.concatenate([mean, np.sqrt(variance)], axis=-1)


POOLING = Pooling(
    name="mean_std",
    description="per layer, the frame mean and the standard deviation of the window means",
    pool=mean_and_spread,
    width=lambda dim: 2 * dim,
)
