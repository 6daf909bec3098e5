"""docs/configuration.md is generated from config.schema.yaml and must be current."""

from __future__ import annotations

import subprocess
import sys

from workflow_runner import REPO_ROOT


def test_the_configuration_reference_is_current():
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "config_reference.py"), "--check"], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr


def test_every_schema_key_appears_in_the_reference():
    """Every key of the schema, the embedders' declared settings included."""
    from workflow_scripts.embedders.registry import built_in_declarations
    from workflow_scripts.embedders.schema import workflow_schema

    schema = workflow_schema()
    assert set(schema["properties"]["embedder_settings"]["properties"]) >= set(built_in_declarations())
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for section, node in schema["properties"].items():
        for key, child in node.get("properties", {}).items():
            assert f"`{section}.{key}`" in reference, f"{section}.{key}"
            if section == "embedder_settings" and key in built_in_declarations():
                for setting in child["properties"]:
                    assert f"`{section}.{key}.{setting}`" in reference, f"{section}.{key}.{setting}"
