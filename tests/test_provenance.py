"""Every output's provenance names the environment lock beside the code version."""

from __future__ import annotations

import hashlib
from importlib import metadata

import pytest

from workflow_scripts.plumbing import provenance
from workflow_scripts.plumbing.provenance import (
    ENVIRONMENT_LOCK,
    environment_lock,
    installed_versions,
    lock_mismatches,
    pinned_versions,
    provenance_record,
)


def test_the_record_carries_the_locks_digest_beside_the_code_version():
    record = provenance_record("classify", {"probe": "linear"})
    lock = record["environment_lock"]
    assert record["code"]["source_digest"]
    assert lock["path"] == "requirements/lock.txt"
    assert lock["sha256"] == hashlib.sha256(ENVIRONMENT_LOCK.read_bytes()).hexdigest()
    assert lock["torch"] == pinned_versions(provenance.TORCH_PIN)["torch"]
    assert lock["no_deps_sha256"] == hashlib.sha256(provenance.NO_DEPS_LOCK.read_bytes()).hexdigest()
    assert "basic-pitch" in pinned_versions(provenance.NO_DEPS_LOCK)  # so a different basic-pitch is a mismatch
    assert isinstance(lock["mismatches"], list)


def test_the_lock_is_read_once_per_process():
    # provenance_record runs for every piece: the digest and the installed versions are cached.
    assert environment_lock() is environment_lock()


def test_installed_versions_read_from_folder_names_agree_with_the_metadata():
    installed = installed_versions()
    for name in ("numpy", "pyyaml", "scikit-learn", "huggingface-hub", "torch"):
        assert installed[name] == metadata.version(name), name


def test_mismatches_name_each_package_that_differs_from_its_pin():
    pins = {"numpy": "2.4.6", "torch": "2.13.0", "pandas": "3.1.1", "mido": "1.3.3"}
    installed = {"numpy": "2.4.6", "torch": "2.13.0+cpu", "pandas": "3.0.0"}
    expected = ["mido: not installed, 1.3.3 pinned", "pandas: 3.0.0 installed, 3.1.1 pinned"]
    assert lock_mismatches(pins, installed) == expected
    assert lock_mismatches(pins, {**installed, "pandas": "3.1.1", "mido": "1.3.3"}) == []


def test_a_requirements_file_without_pins_is_an_error_naming_it(tmp_path):
    unpinned = tmp_path / "lock.txt"
    unpinned.write_text("numpy>=2\n# a comment\n")
    with pytest.raises(ValueError, match=str(unpinned)):
        pinned_versions(unpinned)
    assert pinned_versions(ENVIRONMENT_LOCK)["huggingface-hub"]  # names compare as PEP 503 spells them
