"""Config helpers: schema defaults for the named entries (variants, probes) that
JSON-schema default filling does not reach, and the settings each stage receives."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config.schema.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def property_defaults(fragment: dict[str, Any]) -> dict[str, Any]:
    return {name: copy.deepcopy(spec["default"]) for name, spec in fragment.get("properties", {}).items() if "default" in spec}


def with_defaults(entries: dict[str, dict[str, Any]], fragment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    defaults = property_defaults(fragment)
    return {name: {**defaults, **(entry or {})} for name, entry in entries.items()}


def complete_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Fill defaults inside each named variant and probe, in place."""
    config["variants"] = with_defaults(config["variants"], schema["properties"]["variants"]["additionalProperties"])
    config["probes"] = with_defaults(config["probes"], schema["definitions"]["probe"])


def render_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """What the render stage of ``variant`` receives (see render.RenderSettings)."""
    chosen = config["variants"][variant]
    return {
        "sample_rate": config["render"]["sample_rate"],
        "tempo_qpm": chosen["tempo_qpm"] or config["render"]["tempo_qpm"],
        "window_measures": config["segmentation"]["window_measures"],
        "hop_measures": config["segmentation"]["hop_measures"],
        "programs": chosen["programs"],
        "velocity": chosen["velocity"],
        "transpose": chosen["transpose"],
        "gain": config["render"]["gain"],
    }


def soundfont_setting(config: dict[str, Any], variant: str) -> str | None:
    return config["variants"][variant]["soundfont"] or config["render"]["soundfont"]


def embedder_settings(config: dict[str, Any], embedder: str) -> dict[str, Any]:
    return {**config["embedder_settings"].get(embedder, {}), "sample_rate": config["render"]["sample_rate"]}
