"""Where an output came from: code version, environment lock, config digest, library versions."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from workflow_scripts.plumbing.code_graph import PACKAGE_ROOT
from workflow_scripts.plumbing.io_utils import sha256_file, sha256_json

REPO_ROOT = PACKAGE_ROOT.parent
# The pinned environment scripts/bootstrap.sh installs: every package with hashes, torch by version.
ENVIRONMENT_LOCK = REPO_ROOT / "requirements" / "lock.txt"
TORCH_PIN = REPO_ROOT / "requirements" / "torch.txt"
NO_DEPS_LOCK = REPO_ROOT / "requirements" / "no-deps.txt"  # basic-pitch, installed without its dependencies
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


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


def normalized_name(name: str) -> str:
    """A distribution's name as PEP 503 compares them (``Huggingface_Hub`` is ``huggingface-hub``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line of a requirements file (a lock or a pin)."""
    pins = {normalized_name(name): version for name, version in PIN_LINE.findall(path.read_text())}
    if not pins:
        raise ValueError(f"{path} pins no package (no 'name==version' line): is it a requirements file?")
    return pins


def installed_versions() -> dict[str, str]:
    """name -> version of the distributions on sys.path, the first one of a name winning as for imports.

    Read from the names of the ``name-version.dist-info`` folders: reading every METADATA file
    instead costs ~0.15 s, paid by each job that writes provenance.
    """
    versions: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = [item.name for item in os.scandir(entry or ".") if item.name.endswith(".dist-info")]
        except OSError:  # a zip file, or a path that is not there
            continue
        for folder in names:
            name, _, version = folder.removesuffix(".dist-info").rpartition("-")
            versions.setdefault(normalized_name(name), version)
    return versions


def lock_mismatches(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """How the installed packages differ from the pins (a local label, torch's ``+cpu``, is no difference)."""
    mismatches = []
    for name, pinned in sorted(pins.items()):
        found = installed.get(name)
        if found is None:
            mismatches.append(f"{name}: not installed, {pinned} pinned")
        elif found != pinned and found.split("+")[0] != pinned:
            mismatches.append(f"{name}: {found} installed, {pinned} pinned")
    return mismatches


@functools.cache
def environment_lock() -> dict[str, Any]:
    """Which pinned environment made an output: the lock's digest and how the installed packages differ from it.

    An empty ``mismatches`` says this Python runs exactly the lock (with requirements/torch.txt
    and requirements/no-deps.txt, whose digest is recorded too);
    an install with UNPINNED=1, or a conda env, lists what differs.
    """
    if not ENVIRONMENT_LOCK.is_file():
        return {
            "path": "requirements/lock.txt",
            "sha256": None,
            "torch": None,
            "no_deps_sha256": None,
            "mismatches": None,
        }
    pins = pinned_versions(ENVIRONMENT_LOCK)
    torch_pin = pinned_versions(TORCH_PIN) if TORCH_PIN.is_file() else {}
    no_deps = pinned_versions(NO_DEPS_LOCK) if NO_DEPS_LOCK.is_file() else {}
    return {
        "path": "requirements/lock.txt",
        "sha256": sha256_file(ENVIRONMENT_LOCK),
        "torch": torch_pin.get("torch"),
        "no_deps_sha256": sha256_file(NO_DEPS_LOCK) if NO_DEPS_LOCK.is_file() else None,
        "mismatches": lock_mismatches({**pins, **torch_pin, **no_deps}, installed_versions()),
    }


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
        "environment_lock": environment_lock(),
        **extra,
    }
