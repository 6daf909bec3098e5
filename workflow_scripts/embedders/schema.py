"""The config schema with its embedder part made from the embedders' declarations.

config.schema.yaml leaves the ``embedders`` enum and the ``embedder_settings`` blocks empty;
:func:`with_embedders` fills them in. The Snakefile validates against :func:`workflow_schema_file`,
and scripts/config_reference.py documents the built-in part. Kept out of registry.py because it
reads the whole config schema (and so the probe kinds): the embed stage's code digest, which
covers the registry, must not change when a probe does.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from workflow_scripts.embedders.declaration import EmbedderDeclaration
from workflow_scripts.embedders.registry import declarations


def with_embedders(schema: dict[str, Any], found: dict[str, EmbedderDeclaration] | None = None) -> dict[str, Any]:
    """The config schema with its embedder part (the ``embedders`` enum and one
    ``embedder_settings`` block per embedder) made from the declarations."""
    found = declarations() if found is None else found
    ordered = sorted(found, key=lambda name: found[name].gpu)  # the CPU embedders first, as config.yaml lists them
    properties = schema["properties"]
    properties["embedders"]["items"]["enum"] = ordered
    properties["embedder_settings"]["properties"] = {name: found[name].schema_block() for name in ordered}
    return schema


@functools.cache
def _workflow_schema_json() -> str:
    from workflow_scripts.plumbing.settings import load_schema

    return json.dumps(with_embedders(load_schema()))


def workflow_schema() -> dict[str, Any]:
    """The whole config schema, embedders included (a fresh copy)."""
    return json.loads(_workflow_schema_json())


def workflow_schema_file() -> str:
    """:func:`workflow_schema` as a file for ``snakemake.utils.validate``, which takes a path.

    Kept in a folder of the user's own (a shared login node has many users) and named by its
    content; a file found there is used only if it holds exactly that content, and a new one
    is written atomically, so concurrent Snakemake starts (a cluster job's own among them)
    share it safely."""
    text = _workflow_schema_json()
    folder = Path(tempfile.gettempdir()) / f"chorale-id-{getpass.getuser()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"config-schema-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        handle, partial = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(partial, path)
    return str(path)
