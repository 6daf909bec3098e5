"""Write docs/configuration.md from config.schema.yaml and the embedders' declarations: every key, its
type, default and description.

The schema is what the workflow validates against, so the reference cannot drift from it:
tests/test_config_reference.py fails when the committed page differs from what this writes.

    .venv/bin/python scripts/config_reference.py            # rewrite docs/configuration.md
    .venv/bin/python scripts/config_reference.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = REPO_ROOT / "config.schema.yaml"
REFERENCE = REPO_ROOT / "docs" / "configuration.md"
HEADER = """# Configuration reference

Generated from `config.schema.yaml` and the embedder modules' declarations by
`scripts/config_reference.py`; do not edit by hand.
Every key is optional: the default fills anything left out, and an unknown key is an error.
`config.yaml` holds the defaults a run starts from; `--configfile my.yaml` overrides them
(targets first: `snakemake <targets> --configfile my.yaml`).
"""


def resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The node with a local ``$ref`` (``#/definitions/name``) replaced by its target, siblings kept."""
    if "$ref" not in node:
        return node
    target: Any = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    siblings = {key: value for key, value in node.items() if key != "$ref"}
    # Sibling properties (an encoder entry's own defaults) refine the target's, field by field.
    properties = {
        name: {**target.get("properties", {}).get(name, {}), **spec}
        for name, spec in {**target.get("properties", {}), **siblings.get("properties", {})}.items()
    }
    return {**target, **siblings, **({"properties": properties} if properties else {})}


def type_text(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(type_text(option) for option in node.get("oneOf", node.get("anyOf")))
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {type_text(node['items'])}"
    return kind


def cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def rows_of(node: dict[str, Any], path: str, schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for ``node`` and everything below it."""
    node = resolve(node, schema)
    rows = []
    if path:
        default = json.dumps(node["default"]) if "default" in node else ""
        rows.append(
            (f"`{path}`", type_text(node), f"`{default}`" if default else "", cell(node.get("description", "")))
        )
    for name, child in node.get("properties", {}).items():
        rows += rows_of(child, f"{path}.{name}" if path else name, schema)
    # A block chosen by a discriminating field (a probe's kind): its keys, each marked with the block's kind.
    for reference in dict.fromkeys(branch["then"]["$ref"] for branch in node.get("allOf", []) if "then" in branch):
        block = resolve({"$ref": reference}, schema)
        kind = block["properties"]["kind"]["const"]
        for name, child in block["properties"].items():
            if name != "kind":
                key, kind_text, default, description = rows_of(child, f"{path}.{name}", schema)[0]
                rows.append((key, kind_text, default, f"kind {kind}: {description}"))
    entries = node.get("additionalProperties")
    if isinstance(entries, dict):
        rows += rows_of(entries, f"{path}.<name>", schema)
    return rows


def reference_text(schema: dict[str, Any]) -> str:
    parts = [HEADER]
    for name, node in schema["properties"].items():
        parts.append(f"\n## `{name}`\n\n| key | type | default | description |\n| --- | --- | --- | --- |")
        parts += [
            f"| {key} | {kind} | {default} | {description} |"
            for key, kind, default, description in rows_of(node, name, schema)
        ]
    return "\n".join(parts) + "\n"


def documented_schema() -> dict[str, Any]:
    """config.schema.yaml with the embedder part this repository's embedder modules declare
    (not plug-ins installed here: the page documents the repository)."""
    sys.path.insert(0, str(REPO_ROOT))
    from workflow_scripts.embedders.registry import built_in_declarations
    from workflow_scripts.embedders.schema import with_embedders

    return with_embedders(yaml.safe_load(SCHEMA.read_text(encoding="utf-8")), built_in_declarations())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    arguments = parser.parse_args()
    text = reference_text(documented_schema())
    if arguments.check:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
        if current != text:
            print(f"{REFERENCE} is out of date: run .venv/bin/python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
