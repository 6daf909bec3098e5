"""Every embedder the workflow can run, read from the embedders' own declarations.

Built-in embedders are the modules of this package that define ``DECLARATIONS``; others come
from installed packages through the ``chorale_id.embedders`` entry-point group, each entry
point naming a module with ``DECLARATIONS`` (or a declaration, or a list of them). The config
schema's embedder part is made from them (``schema.py``), so an embedder of another package
needs no file of this repository. See ``docs/extending.md``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
from pathlib import Path
from typing import Any

from workflow_scripts.embedders.declaration import DeclarationError, EmbedderDeclaration
from workflow_scripts.plumbing.code_graph import PACKAGE, sources_digest, workflow_closure

ENTRY_POINT_GROUP = "chorale_id.embedders"
BUILT_IN_PACKAGE = "workflow_scripts.embedders"
# Settings that change how fast vectors are computed, not what they are: left out of
# the piece cache's key so changing them reuses finished pieces.
RUNTIME_ONLY_SETTINGS = ("batch_size", "device", "cache_dir")


def _declarations_of(loaded: Any, origin: str) -> list[EmbedderDeclaration]:
    """What a module (its ``DECLARATIONS``), a declaration or a list of them declares."""
    items = getattr(loaded, "DECLARATIONS", loaded)
    if isinstance(items, EmbedderDeclaration):
        items = [items]
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, EmbedderDeclaration) for item in items):
        raise DeclarationError(
            f"{origin} must be a module with DECLARATIONS (a list of EmbedderDeclaration), a declaration or a list of them"
        )
    return list(items)


def _built_in() -> list[tuple[str, Any]]:
    package = importlib.import_module(BUILT_IN_PACKAGE)
    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{BUILT_IN_PACKAGE}.{info.name}")
        if hasattr(module, "DECLARATIONS"):
            modules.append((f"module {module.__name__}", module))
    return modules


def _from_entry_points() -> list[tuple[str, Any]]:
    found = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry_point.dist.name if entry_point.dist else "an unknown distribution"
        origin = f"entry point '{entry_point.name} = {entry_point.value}' of {distribution} (group {ENTRY_POINT_GROUP})"
        try:
            loaded = entry_point.load()
        except Exception as error:
            raise DeclarationError(f"{origin} could not be loaded: {type(error).__name__}: {error}") from error
        found.append((origin, loaded))
    return found


def _collect(sources: list[tuple[str, Any]]) -> dict[str, EmbedderDeclaration]:
    found: dict[str, EmbedderDeclaration] = {}
    origins: dict[str, str] = {}
    for origin, loaded in sources:
        for declaration in _declarations_of(loaded, origin):
            if declaration.name in found:
                raise DeclarationError(
                    f"embedder '{declaration.name}' is declared twice: by {origins[declaration.name]} and by {origin}; "
                    "rename one"
                )
            found[declaration.name] = declaration
            origins[declaration.name] = origin
    return found


@functools.cache
def declarations() -> dict[str, EmbedderDeclaration]:
    """Name -> declaration, built-in embedders first; a name declared twice is refused."""
    return _collect([*_built_in(), *_from_entry_points()])


@functools.cache
def built_in_declarations() -> dict[str, EmbedderDeclaration]:
    """This repository's own embedders only (what docs/configuration.md documents)."""
    return _collect(_built_in())


def declaration(name: str) -> EmbedderDeclaration:
    try:
        return declarations()[name]
    except KeyError:
        raise DeclarationError(f"unknown embedder '{name}'; choose one of {sorted(declarations())}") from None


def needs_gpu(name: str) -> bool:
    return declaration(name).gpu


def needs_weights(name: str) -> bool:
    """Whether the embedder has a hub snapshot to fetch before its jobs run."""
    return declaration(name).weights == "hub"


def implementation(name: str) -> str:
    return declaration(name).module


def built_in_implementations() -> frozenset[str]:
    return frozenset(item.module for item in declarations().values() if item.module.startswith(f"{PACKAGE}."))


# ---- code digests ---------------------------------------------------------------------
def stage_modules(stage: str, embedder: str | None = None) -> frozenset[str]:
    """The code behind a stage's results: its module and what it imports, but of the
    embedders' implementations only ``embedder``'s. The registry reaches every
    implementation (it imports them to read their declarations), so without this an edit to
    mert.py would rerun the spectral embed jobs, fetch_model and everything after them."""
    own = [implementation(embedder)] if embedder else []
    leave_out = built_in_implementations() - set(own)
    return frozenset().union(
        *(workflow_closure(module, leave_out) for module in [f"workflow_scripts.stages.{stage}", *own])
    )


def external_source_digest(module: str) -> str:
    """An embedder from another package: the sources of its top-level package (every .py file
    under it) and its distribution's version, since the import walk of this repository's code
    cannot see them. Workflow modules it imports are not followed: a plug-in that builds on a
    built-in embedder's module should name it in its own code's version."""
    top = module.split(".")[0]
    spec = importlib.util.find_spec(top)
    digest = hashlib.sha256(module.encode())
    if spec is not None and spec.submodule_search_locations:
        files = sorted(path for folder in spec.submodule_search_locations for path in Path(folder).rglob("*.py"))
    else:
        files = [Path(spec.origin)] if spec is not None and spec.origin else []
    for path in files:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for distribution in importlib.metadata.packages_distributions().get(top, []):
        digest.update(f"{distribution}=={importlib.metadata.version(distribution)}".encode())
    return digest.hexdigest()[:16]


@functools.cache
def stage_code_digest(stage: str, embedder: str | None = None) -> str:
    """Digest of :func:`stage_modules`: in each rule's params and in the embed cache keys."""
    digest = sources_digest(stage_modules(stage, embedder))
    if embedder and not implementation(embedder).startswith(f"{PACKAGE}."):
        digest = hashlib.sha256(f"{digest}:{external_source_digest(implementation(embedder))}".encode()).hexdigest()[
            :16
        ]
    return digest
