"""Collection files that hold many tunes (ABC tune books), read by text alone.

The Snakefile lists the corpus on every start-up, so finding the tunes of a book must
not parse it: an ABC tune starts at its reference-number line (``X:``), which the
standard puts first in every tune.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# An ABC reference-number line starts a tune ("X: 17"); the standard puts it first in each tune.
ABC_TUNE_START = re.compile(rb"^X:[ \t]*(\d+)", re.MULTILINE)


def abc_tune_numbers(path: Path) -> list[int]:
    """The ``X:`` number of every tune in an ABC file, in file order (a text scan, no parse)."""
    return [int(match.group(1)) for match in ABC_TUNE_START.finditer(path.read_bytes())]


def abc_tune_text(path: Path, tune_index: int) -> str:
    """One tune of an ABC collection as a file of its own: the file header (what comes
    before the first tune: shared fields such as ``M:`` or ``L:`` defaults) and that tune."""
    data = path.read_bytes()
    starts = [match.start() for match in ABC_TUNE_START.finditer(data)]
    if not 0 <= tune_index < len(starts):
        raise IndexError(f"{path} has {len(starts)} tunes; tune {tune_index} is not among them")
    end = starts[tune_index + 1] if tune_index + 1 < len(starts) else len(data)
    return (data[: starts[0]] + data[starts[tune_index] : end]).decode("utf-8", errors="replace")


def abc_tune_sha256(path: Path, tune_index: int) -> str:
    """A tune's own digest (header and tune text): editing one tune of a book reruns that tune only."""
    return hashlib.sha256(abc_tune_text(path, tune_index).encode("utf-8")).hexdigest()
