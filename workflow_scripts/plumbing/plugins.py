"""Packages whose modules declare themselves: each module of the package that defines the
package's attribute (``KIND`` for probe kinds, ``POOLING`` for poolings) adds one entry,
found at run time, so nothing else lists them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any


def package_modules(package: str, path: Iterable[str]) -> list[str]:
    """The dotted names of a package's modules, without importing them."""
    return [f"{package}.{module.name}" for module in pkgutil.iter_modules(path)]


def declared_in(modules: list[str], attribute: str) -> dict[str, Any]:
    """Name -> the ``attribute`` each module defines (modules without it are skipped)."""
    found = {}
    for module in modules:
        declared = getattr(importlib.import_module(module), attribute, None)
        if declared is not None:
            found[declared.name] = declared
    return found
