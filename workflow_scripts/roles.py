"""The roles a split gives each snippet. A module without dependencies, so that every
stage (classify, retrieval, transfer) can share the names without pulling in the split's
or the config's imports."""

ROLES = ("train", "validation", "test", "dropped_overlap")
TRAINING_ROLES = ("train", "validation")  # what a fixed-recipe probe trains on
