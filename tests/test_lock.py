"""requirements/lock.txt pins what pyproject.toml asks for: no more, no less, every file by hash.

The lock is what scripts/bootstrap.sh installs; torch alone is pinned by version in
requirements/torch.txt (the lock's header says why). A dependency added to pyproject.toml
without refreshing the lock (bash scripts/lock.sh), or left in the lock after leaving
pyproject.toml, fails here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from workflow_runner import REPO_ROOT

from workflow_scripts.plumbing.provenance import pinned_versions

LOCK = REPO_ROOT / "requirements/lock.txt"
TORCH_PIN = REPO_ROOT / "requirements/torch.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"
# uv's annotation of a package the project itself requires.
FROM_PYPROJECT = "chorale-id (pyproject.toml)"
ENTRY_START = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


@dataclass
class LockedPackage:
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def read_lock(path: Path) -> dict[str, LockedPackage]:
    """name -> pin, hashes and the ``# via`` annotations of each entry of a uv-compiled lock."""
    packages: dict[str, LockedPackage] = {}
    current: LockedPackage | None = None
    in_via = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if entry := ENTRY_START.match(line):
            current = packages.setdefault(canonicalize_name(entry["name"]), LockedPackage(entry["version"]))
            in_via = False
        elif line[:1] not in ("", " ", "#"):
            raise ValueError(f"{path}:{number}: '{stripped}' is no 'name==version' pin: run bash scripts/lock.sh")
        elif current is None or not stripped:
            continue
        elif stripped.startswith("--hash="):
            current.hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            current.via += [rest] if rest else []
            in_via = not rest
        elif in_via and stripped.startswith("#   "):
            current.via.append(stripped.removeprefix("#").strip())
        else:
            in_via = False
    if not packages:
        raise ValueError(f"{path} pins no package: regenerate it with bash scripts/lock.sh")
    return packages


def project_requirements(pyproject_text: str) -> list[Requirement]:
    """The project's dependencies and those of its test extra, which bootstrap.sh installs."""
    project = tomllib.loads(pyproject_text)["project"]
    return [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["test"]]


def disagreements(
    requirements: list[Requirement], lock: dict[str, LockedPackage], torch_pin: dict[str, str]
) -> list[str]:
    """Every way the lock (with requirements/torch.txt) and pyproject.toml's requirements disagree."""
    pinned = {name: package.version for name, package in lock.items()} | torch_pin
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement} is in pyproject.toml but not in the lock")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{requirement} in pyproject.toml, but the lock pins {name}=={pinned[name]}")
    declared = {canonicalize_name(requirement.name) for requirement in requirements}
    problems += [
        f"{name} is in the lock as required by pyproject.toml, which no longer lists it"
        for name, package in lock.items()
        if FROM_PYPROJECT in package.via and name not in declared
    ]
    return problems


@pytest.fixture(scope="module")
def lock() -> dict[str, LockedPackage]:
    return read_lock(LOCK)


def test_pyproject_and_the_lock_agree(lock):
    problems = disagreements(project_requirements(PYPROJECT.read_text()), lock, pinned_versions(TORCH_PIN))
    assert not problems, "refresh the lock (bash scripts/lock.sh):\n" + "\n".join(problems)


def test_a_dependency_in_one_and_not_the_other_is_a_disagreement(lock):
    requirements = project_requirements(PYPROJECT.read_text())
    torch_pin = pinned_versions(TORCH_PIN)
    before = set(disagreements(requirements, lock, torch_pin))

    def new_disagreements(changed: list[Requirement]) -> list[str]:
        return [problem for problem in disagreements(changed, lock, torch_pin) if problem not in before]

    assert new_disagreements(requirements + [Requirement("polars>=1")]) == [
        "polars>=1 is in pyproject.toml but not in the lock"
    ]
    assert new_disagreements([r for r in requirements if r.name != "mido"]) == [
        "mido is in the lock as required by pyproject.toml, which no longer lists it"
    ]
    assert new_disagreements([Requirement("numpy<2") if r.name == "numpy" else r for r in requirements]) == [
        f"numpy<2 in pyproject.toml, but the lock pins numpy=={lock['numpy'].version}"
    ]


def test_every_locked_package_is_pinned_exactly_with_hashes(lock):
    unhashed = sorted(name for name, package in lock.items() if not package.hashes)
    assert not unhashed, f"{LOCK} has entries without hashes: {unhashed}"
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", digest) for package in lock.values() for digest in package.hashes)
    unexplained = sorted(name for name, package in lock.items() if not package.via)
    assert not unexplained, f"{LOCK} has entries without a '# via' annotation: {unexplained}"


def test_torch_is_pinned_by_version_outside_the_lock_and_no_cuda_package_is_in_it(lock):
    # The CPU build is a local file or PyTorch's index, with another hash than PyPI's CUDA build;
    # a lock resolved against the CUDA build would install the nvidia-* packages too.
    assert "torch" not in lock
    assert not [name for name in lock if name.startswith("nvidia-") or name == "triton"]
    assert set(pinned_versions(TORCH_PIN)) == {"torch"}
    # torch's own dependencies come from the lock, since bootstrap.sh installs torch after it.
    assert {"sympy", "networkx", "filelock", "jinja2", "fsspec", "setuptools"} <= set(lock)


def test_the_lock_reader_names_the_file_of_a_malformed_lock(tmp_path):
    broken = tmp_path / "lock.txt"
    broken.write_text("numpy>=2 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        read_lock(broken)
    broken.write_text("# only comments\n")
    with pytest.raises(ValueError, match="pins no package"):
        read_lock(broken)


NO_DEPS = REPO_ROOT / "requirements/no-deps.txt"
NO_DEPS_IN = REPO_ROOT / "requirements/no-deps.in"


def test_the_no_deps_file_pins_exactly_what_no_deps_in_asks_for_by_hash(lock):
    # Packages installed without their dependencies (basic-pitch: its model file only; its declared
    # dependencies would pull TensorFlow). bootstrap.sh installs them with --no-deps --require-hashes.
    wanted = {
        canonicalize_name(Requirement(line).name): Requirement(line)
        for line in NO_DEPS_IN.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    pinned = read_lock(NO_DEPS)
    assert set(pinned) == set(wanted), f"refresh {NO_DEPS.name}: bash scripts/lock.sh"
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pinned[name].version), (name, pinned[name].version)
        assert pinned[name].hashes and all(
            re.fullmatch(r"sha256:[0-9a-f]{64}", digest) for digest in pinned[name].hashes
        )
    # Installed without dependencies, so none of them may be pulled into the lock or pyproject's list.
    assert not set(pinned) & set(lock)
    declared = {canonicalize_name(requirement.name) for requirement in project_requirements(PYPROJECT.read_text())}
    assert not set(pinned) & declared
    assert not [name for name in lock if name.startswith("tensorflow") or name in ("librosa", "tflite-runtime")]


def test_what_basic_pitchs_model_needs_at_run_time_is_in_the_lock(lock):
    assert {"onnxruntime", "soxr"} <= set(lock)
