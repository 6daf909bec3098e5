from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from workflow_runner import FOUR_CHORALES, music21_chorale  # noqa: E402 - after the path; music21_chorale is shared with tests


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger("chorale_id.tests")


@pytest.fixture
def chorale_folder(tmp_path: Path) -> Path:
    """A folder corpus of four short real chorales."""
    folder = tmp_path / "scores"
    folder.mkdir()
    for name in FOUR_CHORALES:
        shutil.copy(music21_chorale(name), folder / f"{name}.mxl")
    return folder
