"""Probe kinds: every classifier the classify stage can train, one module each.

A kind is a module in this package that defines ``KIND = ProbeKind(...)``:

- ``settings``: a frozen dataclass of its settings with their defaults, subclassing
  ``CommonSettings`` (``kind``, ``normalization``, ``layer``, ``seed``, ``bootstrap_resamples``,
  ``pooling``, which the stage applies before the kind sees the data);
- ``fit_and_score(data, settings, logger)``: fit on the train role (and choose whatever it
  chooses on validation), return a ``ProbeOutcome`` with scores for the test role;
- ``iterative(settings)``: whether it has a training curve worth a figure (Adam's epochs);
  a one-shot fit (L-BFGS to convergence, kNN) records one point and no figure;
- ``selects_on_validation(settings)``: whether it needs validation snippets, which the
  preconditions check (workflow_scripts/probes/preconditions.py) before it runs.

config.schema.yaml holds each kind's settings block (``definitions.probe_<kind>``, chosen by
``kind``); tests/test_settings.py checks that every block and its dataclass agree, field for
field and default for default. Nothing else lists the kinds: the registry below finds the
modules. docs/extending.md, "A probe kind", is the recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

import numpy as np

from workflow_scripts.plumbing.plugins import declared_in, package_modules
from workflow_scripts.pooling import NATIVE, check_pooling

NORMALIZATIONS = ("none", "standardize", "l2")
# A probe without ``kind`` is the report's torch head, so configs written before kinds existed mean what they meant.
DEFAULT_KIND = "neural"


@dataclass(frozen=True)
class CommonSettings:
    kind: str = DEFAULT_KIND
    normalization: str = "none"
    layer: str | int = "mean"
    seed: int = 0
    bootstrap_resamples: int = 1000
    pooling: str = NATIVE

    def check(self) -> None:
        """Choices and cross-field rules, for settings built in code as well as from the
        validated config; raise ValueError naming the field and the fix. Kinds extend it."""
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"probe normalization '{self.normalization}' is not one of {NORMALIZATIONS}")
        check_pooling(self.pooling, "probe")


@dataclass
class ProbeOutcome:
    scores: np.ndarray  # (test snippets, classes)
    curve: list[dict[str, float]]  # one row per step of an iterative kind; one row otherwise
    train_seconds: float
    selected_step: int  # the epoch or iteration count the scores come from
    selected: dict[str, Any] = field(default_factory=dict)  # what validation chose (l2, k), {} if nothing
    extras: dict[str, Any] = field(default_factory=dict)  # kind-specific facts for metrics.json


@dataclass(frozen=True)
class ProbeKind:
    name: str
    settings: type[CommonSettings]
    fit_and_score: Callable[..., ProbeOutcome]
    iterative: Callable[[Any], bool]
    selects_on_validation: Callable[[Any], bool]
    description: str


def kind_modules() -> list[str]:
    """The kind modules' names, without importing them (the classify stage's code digest reads them)."""
    return package_modules(__name__, __path__)


def kinds_code_modules() -> frozenset[str]:
    """The kind modules and what they import: code behind every classify result that the
    import walk from the classify stage cannot see, because the stage finds the kinds at
    run time. rules/classify.smk adds it to the stage's digest (``classify_code_digest``);
    every kind counts for every classify job, so editing one kind retrains all probes."""
    from workflow_scripts.plumbing.code_graph import workflow_closure

    return frozenset().union(*(workflow_closure(module) for module in kind_modules()))


@cache
def probe_kinds() -> dict[str, ProbeKind]:
    """Name -> kind, for every module of this package. Kind modules import torch or
    scikit-learn inside their functions only, so this costs nothing at DAG build."""
    return declared_in(kind_modules(), "KIND")


def kind_of(entry: dict[str, Any]) -> ProbeKind:
    name = (entry or {}).get("kind", DEFAULT_KIND)
    kinds = probe_kinds()
    if name not in kinds:
        raise ValueError(f"probe kind '{name}' is not one of {sorted(kinds)}")
    return kinds[name]


def settings_from_config(entry: dict[str, Any]) -> CommonSettings:
    """A probe's config block as its kind's settings; unknown fields are refused by name."""
    entry = dict(entry or {})
    kind = kind_of(entry)
    known = {spec.name for spec in fields(kind.settings)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"probe kind '{kind.name}' has no setting(s) {unknown}; its settings are {sorted(known)}")
    settings = kind.settings(**{**entry, "kind": kind.name})
    settings.check()
    return settings


def fit_and_score(data, settings: CommonSettings, logger=None) -> ProbeOutcome:
    return kind_of({"kind": settings.kind}).fit_and_score(data, settings, logger)


def is_iterative(entry: dict[str, Any]) -> bool:
    return kind_of(entry).iterative(settings_from_config(entry))


def selects_on_validation(entry: dict[str, Any]) -> bool:
    return kind_of(entry).selects_on_validation(settings_from_config(entry))


def require_validation(data, kind: str) -> None:
    if len(data.labels["validation"]) == 0:
        raise ValueError(
            f"probe kind {kind} chooses its setting on validation, but the split has no validation snippets "
            "(splits.validation_fraction is 0?): give the split a validation share"
        )


def top1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 of scores, NaN with no labels: what kinds compare settings by on validation."""
    if len(labels) == 0:
        return float("nan")
    return float((scores.argmax(axis=1) == labels).mean())
