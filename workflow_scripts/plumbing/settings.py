"""Config helpers: schema defaults for the named entries (variants, probes) that
JSON-schema default filling does not reach, and the settings each stage receives."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from workflow_scripts.plumbing.roles import CLOSED_SET_SPLITS  # noqa: F401 - defined beside the roles; part of this interface

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config.schema.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    # libyaml's loader when PyYAML has it: the schema is read at every Snakemake start,
    # and the pure-Python loader alone costs a tenth of a no-op rerun's time budget.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=loader)  # noqa: S506 - a safe loader


def property_defaults(fragment: dict[str, Any]) -> dict[str, Any]:
    return {
        name: copy.deepcopy(spec["default"])
        for name, spec in fragment.get("properties", {}).items()
        if "default" in spec
    }


def with_defaults(entries: dict[str, dict[str, Any]], fragment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    defaults = property_defaults(fragment)
    return {name: {**defaults, **(entry or {})} for name, entry in entries.items()}


def sweep_probes(sweep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One named probe per combination of the sweep grid."""
    grid = sweep.get("grid") or {}
    if not grid or not sweep.get("enabled", True):
        return {}
    fields = sorted(grid)
    probes = {}
    for values in itertools.product(*(grid[field] for field in fields)):
        name = "sweep__" + "__".join(f"{field}-{value}" for field, value in zip(fields, values))
        probes[re.sub(r"[^A-Za-z0-9_.-]", "_", name)] = {**(sweep.get("base") or {}), **dict(zip(fields, values))}
    return probes


def check_segmentation(segmentation: dict[str, Any]) -> None:
    window, hop = segmentation["window_measures"], segmentation["hop_measures"]
    if hop > window:
        raise ValueError(
            f"segmentation.hop_measures ({hop}) is larger than segmentation.window_measures ({window}): "
            f"{hop - window} measure(s) after every snippet would never be heard. Use hop <= window."
        )


def probe_fragment(schema: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The schema block of the probe's kind (``definitions.probe_<kind>``; no kind is neural)."""
    from workflow_scripts.probes.kinds import DEFAULT_KIND

    return schema["definitions"][f"probe_{(entry or {}).get('kind', DEFAULT_KIND)}"]


def complete_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Check cross-key rules, expand the sweep into probes and fill defaults inside each variant and probe, in place."""
    check_segmentation(config["segmentation"])
    from workflow_scripts.pooling import check_pooling

    check_pooling(config["retrieval"]["pooling"], "retrieval")
    sweep = config.get("sweep") or {}
    probe_fields = set(probe_fragment(schema, sweep.get("base") or {})["properties"])
    unknown = set(sweep.get("grid") or {}) - probe_fields
    if unknown:
        raise ValueError(f"sweep.grid names unknown probe fields {sorted(unknown)}; known: {sorted(probe_fields)}")
    rendering = schema["definitions"]["rendering"]
    config["variants"] = with_defaults(config["variants"], rendering)
    identification = config["identification"]
    identification["renderings"] = with_defaults(identification["renderings"], rendering)
    if identification["reference"] not in identification["renderings"]:
        raise ValueError(
            f"identification.reference '{identification['reference']}' is not one of identification.renderings "
            f"{sorted(identification['renderings'])}: name the rendering queries are matched against"
        )
    probes = {**config["probes"], **sweep_probes(sweep)}
    config["probes"] = {
        name: with_defaults({name: entry}, probe_fragment(schema, entry))[name] for name, entry in probes.items()
    }


def rendering_of(config: dict[str, Any], name: str, whole: bool = False) -> dict[str, Any]:
    """A variant's rendering, or (``whole``) an identification rendering's."""
    return config["identification"]["renderings"][name] if whole else config["variants"][name]


def render_settings(config: dict[str, Any], variant: str, whole: bool = False) -> dict[str, Any]:
    """What the render stage of ``variant`` receives (see stages.render.RenderSettings); ``whole``
    names an identification rendering, each piece one continuous recording."""
    chosen = rendering_of(config, variant, whole)
    return {
        "whole_piece": whole,
        "sample_rate": config["render"]["sample_rate"],
        "tempo_qpm": chosen["tempo_qpm"] or config["render"]["tempo_qpm"],
        "window_measures": config["segmentation"]["window_measures"],
        "hop_measures": config["segmentation"]["hop_measures"],
        "programs": chosen["programs"],
        "velocity": chosen["velocity"],
        "transpose": chosen["transpose"],
        "gain": config["render"]["gain"],
    }


def soundfont_setting(config: dict[str, Any], variant: str, whole: bool = False) -> str | None:
    return rendering_of(config, variant, whole)["soundfont"] or config["render"]["soundfont"]


def embedder_settings(config: dict[str, Any], embedder: str) -> dict[str, Any]:
    return {**config["embedder_settings"].get(embedder, {}), "sample_rate": config["render"]["sample_rate"]}


def transfer_name(train: list[str], test: str) -> str:
    return "+".join(train) + "_to_" + test


def configured_transfers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name -> {"train": [...], "test": ...}, checked against the configured variants."""
    variants = set(config["variants"])
    transfers = {}
    for index, entry in enumerate(config.get("variant_transfers") or []):
        train, test = list(entry["train"]), entry["test"]
        where = f"variant_transfers[{index}]"
        unknown = sorted({*train, test} - variants)
        if unknown:
            raise ValueError(f"{where} names unknown variant(s) {unknown}; configured variants: {sorted(variants)}")
        if test in train:
            raise ValueError(
                f"{where}: the test variant '{test}' is also a training variant (that is the within-variant by_snippet run)"
            )
        if len(set(train)) != len(train):
            raise ValueError(f"{where}: a training variant is listed twice: {train}")
        transfers[transfer_name(train, test)] = {"train": train, "test": test}
    if transfers and "by_snippet" not in config["splits"]["names"]:
        raise ValueError("variant_transfers reuse the by_snippet split: add by_snippet to splits.names")
    return transfers
