from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def music21_chorale(name: str) -> Path:
    from workflow_scripts.corpus import music21_corpus_folder

    return music21_corpus_folder("bach") / f"{name}.mxl"


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger("chorale_id.tests")


@pytest.fixture
def chorale_folder(tmp_path: Path) -> Path:
    """A folder corpus of four short real chorales."""
    folder = tmp_path / "scores"
    folder.mkdir()
    for name in ("bwv2.6", "bwv3.6", "bwv4.8", "bwv6.6"):
        shutil.copy(music21_chorale(name), folder / f"{name}.mxl")
    return folder
