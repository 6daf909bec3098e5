"""``sequence``: an order-aware summary, the means of ``PARTS`` successive parts concatenated.

The snippet's windows are cut into ``PARTS`` runs of as equal duration as whole windows
allow, and each run's frame mean is kept in order, so a probe sees what comes first and what
comes after; mean pooling, which the project's results single out as what limits the
score's ceiling (docs/results.md), cannot. A snippet of fewer windows than parts repeats its
last run's mean in the parts it cannot fill."""

import numpy as np

from workflow_scripts.pooling import Pooling, weighted_mean

PARTS = 4


def successive_means(means: np.ndarray, frames: np.ndarray) -> np.ndarray:
    windows = means.shape[1]
    if windows == 0:
        return np.zeros((means.shape[0], PARTS * means.shape[2]))
    bounds = np.linspace(0, windows, PARTS + 1).round().astype(int)
    parts, last = [], None
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop > start:
            last = weighted_mean(means[:, start:stop], frames[start:stop])
        parts.append(last)
    first = next(part for part in parts if part is not None)
    return np.concatenate([first if part is None else part for part in parts], axis=-1)


POOLING = Pooling(
    name="sequence",
    description=f"per layer, the frame means of {PARTS} successive parts of the snippet, concatenated in order",
    pool=successive_means,
    width=lambda dim: PARTS * dim,
)
