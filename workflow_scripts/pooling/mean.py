"""``mean``: the frame mean of each layer, exact from the window means and their frame counts
(for MERT, the native vector up to the summary's float16 rounding)."""

from workflow_scripts.pooling import Pooling, weighted_mean

POOLING = Pooling(
    name="mean",
    description="per layer, the mean of every frame of the snippet",
    pool=weighted_mean,
    width=lambda dim: dim,
)
