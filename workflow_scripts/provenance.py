"""Where an output came from: code version, config digest, library versions."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from typing import Any

from workflow_scripts.code_graph import PACKAGE_ROOT
from workflow_scripts.io_utils import sha256_json


@functools.cache
def source_digest() -> str:
    """Digest of the workflow's Python sources: changes whenever the code that computes changes."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def code_version() -> dict[str, Any]:
    return {"source_digest": source_digest(), "git_commit": git_commit()}


def package_versions(*names: str) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance_record(stage: str, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The provenance stored with every output of ``stage``."""
    return {
        "stage": stage,
        "settings": settings,
        "settings_digest": sha256_json(settings)[:16],
        "code": code_version(),
        **extra,
    }
