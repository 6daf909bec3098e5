"""The roles a split gives each snippet. A module without dependencies, so that every
stage (classify, retrieval, transfer) can share the names without pulling in the split's
or the config's imports."""

ROLES = ("train", "validation", "test", "dropped_overlap")
TRAINING_ROLES = ("train", "validation")  # what a fixed-recipe probe trains on
# Splits whose test pieces all appear in training, so a closed-set classifier applies;
# the others (held-out pieces) are evaluated by retrieval.
CLOSED_SET_SPLITS = ("by_snippet",)


def overlaps(first_a, stop_a, first_b, stop_b):
    """Whether measure windows [first, stop) share a measure: the overlap guard's rule, for
    single windows or elementwise over arrays of them (hence ``&``, not ``and``)."""
    return (first_a < stop_b) & (first_b < stop_a)


def is_leaky(split_settings: dict) -> bool:
    """Whether a split's settings (as recorded in its provenance) let test snippets share
    measures with training ones: a by-snippet split without the overlap guard. Settings
    from before the option existed had the guard; by_piece holds whole pieces out either way."""
    guarded = bool(split_settings.get("overlap_guard", True))
    return not guarded and split_settings.get("split", "by_snippet") in CLOSED_SET_SPLITS
