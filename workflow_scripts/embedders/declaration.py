"""What an embedder declares about itself, once, beside its code.

An embedder module ends with ``DECLARATIONS = [EmbedderDeclaration(...), ...]`` (one entry per
name it answers to). The registry finds the built-in modules of this package and, through the
``chorale_id.embedders`` entry-point group, modules installed from elsewhere; the config schema's
embedder part, ``docs/configuration.md``, the fetch rule, the embed rules' GPU and time requests,
the code digests and the provenance's package versions are all read from these declarations.
Nothing else lists embedders. ``docs/extending.md`` has the recipe.

This module imports nothing heavy: every declaration is read at each Snakemake start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Where an embedder's weights come from. Only "hub" gets a fetch rule (fetch_model_<name>),
# which downloads a pinned snapshot on the submit host before any GPU job.
WEIGHT_SOURCES = {
    "none": "no weights (hand-made features, or the notes themselves)",
    "wheel": "a model file inside an installed Python package",
    "hub": "a Hugging Face snapshot at a pinned revision, fetched by the fetch_model rule",
    "local": "a folder the user names in the embedder's settings",
}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# Keys every setting must carry, so the schema and the generated docs say what it is.
SETTING_KEYS = ("default", "description")


@dataclass(frozen=True)
class PitchClassView:
    """Where an embedder's time summary holds pitch: 12 chroma bins, or 88 piano keys to fold.

    ``layer`` is the summary layer; ``last_dims`` takes that many dims from the end of each
    frame as chroma (spectral's 12 chroma after its mel bands); ``lowest_key`` folds a piano
    roll of 88 keys from that MIDI key into 12 pitch classes. The identification stage's chroma
    alignment reads this (workflow_scripts/identification/alignment.py); an embedder without
    one is matched by cosine only.
    """

    layer: int = 0
    last_dims: int | None = None
    lowest_key: int | None = None

    def __post_init__(self) -> None:
        if (self.last_dims is None) == (self.lowest_key is None):
            raise DeclarationError("a pitch-class view names exactly one of last_dims (chroma) or lowest_key (a roll)")

    def of(self, summary):
        """(layers, windows, dim) summary -> (windows, 12) pitch-class energy, C first for a roll from a C key."""
        import numpy as np

        frames = np.asarray(summary[self.layer], dtype=np.float32)
        if self.last_dims is not None:
            return frames[:, -self.last_dims :]
        classes = (self.lowest_key + np.arange(frames.shape[1])) % 12
        folded = np.zeros((frames.shape[0], 12), np.float32)
        np.add.at(folded.T, classes, frames.T)
        return folded


class DeclarationError(ValueError):
    """A declaration is malformed; the message names the embedder and the field."""


@dataclass(frozen=True)
class EmbedderDeclaration:
    """One embedder name and everything the workflow must know about it before building it.

    ``embedder`` is the :class:`~workflow_scripts.embedders.base.Embedder` subclass; its
    ``from_settings(name, settings, logger)`` builds it, only inside embed jobs, so heavy
    imports belong inside its methods, never at the top of the module. ``settings`` maps each setting to a JSON-schema
    property (``type``, ``default`` and ``description`` at least; ``minimum``, ``enum``,
    ``pattern`` as needed): they become ``embedder_settings.<name>`` in the config schema.
    ``runtime_minutes`` is (fixed, per piece) for a cluster job's time limit. ``pitch_classes``
    says where its time summary holds pitch, for the key-invariant chroma alignment.
    """

    name: str
    embedder: type
    description: str
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpu: bool = False
    weights: str = "none"
    packages: tuple[str, ...] = ("numpy",)
    runtime_minutes: tuple[float, float] = (15.0, 2.0)
    pitch_classes: PitchClassView | None = None

    def __post_init__(self) -> None:
        where = f"embedder declaration '{self.name}' (in {self.module})"
        if not NAME_PATTERN.match(self.name):
            raise DeclarationError(f"{where}: the name must match {NAME_PATTERN.pattern}")
        if self.weights not in WEIGHT_SOURCES:
            raise DeclarationError(f"{where}: weights '{self.weights}' is not one of {sorted(WEIGHT_SOURCES)}")
        if not callable(getattr(self.embedder, "from_settings", None)):
            raise DeclarationError(f"{where}: embedder must be an Embedder subclass (it has no from_settings)")
        for setting, spec in self.settings.items():
            missing = [key for key in SETTING_KEYS if key not in spec]
            if missing:
                raise DeclarationError(f"{where}: setting '{setting}' lacks {', '.join(missing)}")
        if "sample_rate" in self.settings:
            raise DeclarationError(f"{where}: 'sample_rate' is the render rate, filled in by the workflow")

    @property
    def module(self) -> str:
        """The module that holds the implementation: its code is behind this embedder's results."""
        return getattr(self.embedder, "__module__", None) or "an unknown module"

    def build(self, settings: dict[str, Any], logger=None):
        """The embedder, built from its settings (inside an embed job)."""
        return self.embedder.from_settings(self.name, settings, logger)

    def schema_block(self) -> dict[str, Any]:
        """``embedder_settings.<name>`` in the config schema."""
        return {
            "type": "object",
            "default": {},
            "additionalProperties": False,
            "description": self.description,
            "properties": self.settings,
        }

    def runtime_limit(self, pieces: int) -> int:
        """Minutes a cluster job of ``pieces`` pieces may run."""
        fixed, per_piece = self.runtime_minutes
        return int(fixed + per_piece * pieces)
