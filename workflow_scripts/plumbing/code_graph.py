"""What a stage's code is made of: the workflow modules it imports, transitively, and the
third-party packages they import.

Three uses: the piece cache keys a stage's outputs on the digest of exactly the code that
computes them (so editing the report does not re-render 410 pieces); each rule lists the
digest of its stage's code among its params, so Snakemake reruns it when that code
changes; and a test checks that every third-party import is declared in the conda env of
each rule that runs it.
Imports inside functions count: the modules import heavy libraries lazily.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from pathlib import Path

PACKAGE = "workflow_scripts"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # workflow_scripts/


@functools.cache
def module_path(module: str) -> Path | None:
    """The source file of a workflow module, or None if ``module`` is not one."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def imported_names(path: Path) -> frozenset[str]:
    """Dotted names imported anywhere in a file; ``from a import b`` gives a and a.b.
    Relative imports are left out (the package uses absolute ones). Parsing every workflow
    module takes ~50 ms, a few percent of a Snakemake start that digests every stage."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def _parents(module: str) -> list[str]:
    """a.b.c -> [a.b, a]: importing a submodule runs its packages' __init__ first."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]


@functools.cache
def workflow_closure(module: str, leave_out: frozenset[str] = frozenset()) -> frozenset[str]:
    """``module`` and every workflow module it imports, directly or not, without following
    into the modules of ``leave_out``."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current in seen or module_path(current) is None or (current in leave_out and current != module):
            continue
        seen.add(current)
        for name in imported_names(module_path(current)):
            pending.extend(candidate for candidate in (name, *_parents(name)) if module_path(candidate) is not None)
    return frozenset(seen)


def third_party_imports(module: str) -> set[str]:
    """Top-level names of the non-standard-library packages imported by ``module``'s closure."""
    found: set[str] = set()
    for current in workflow_closure(module):
        for name in imported_names(module_path(current)):
            top = name.split(".")[0]
            if top != PACKAGE and top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def sources_digest(modules: frozenset[str]) -> str:
    """Digest of the sources of exactly ``modules``: changes when their code does."""
    digest = hashlib.sha256()
    for current in sorted(modules):
        path = module_path(current)
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def module_digest(module: str) -> str:
    """Digest of the sources of ``module``'s closure: changes when the code behind it does."""
    return sources_digest(workflow_closure(module))
