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
    import yaml

    schema = yaml.safe_load((REPO_ROOT / "config.schema.yaml").read_text())
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for section, node in schema["properties"].items():
        for key in node.get("properties", {}):
            assert f"`{section}.{key}`" in reference, f"{section}.{key}"
