"""Pin every package of the conda envs (envs/*.yaml) to its version in requirements/lock.txt.

Run by scripts/lock.sh after each refresh, so a rule run with --use-conda asks for the same
versions as the .venv (tests/test_environments.py checks that they agree). Standard library only:
it runs before any environment exists.

    python3 scripts/pin_conda_envs.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCKS = (REPO_ROOT / "requirements/lock.txt", REPO_ROOT / "requirements/torch.txt")
# conda-forge names that differ from the PyPI distribution's (as in tests/test_environments.py).
PYPI_NAME = {"pytorch": "torch", "pysoundfile": "soundfile"}
# conda packages that are no PyPI distribution: the interpreter and FluidSynth's C library.
NOT_ON_PYPI = {"python", "fluidsynth"}
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
DEPENDENCY_LINE = re.compile(
    r"^(?P<indent>\s*-\s*)(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>[=<>!][^#\n]*)?(?P<comment>\s*#.*)?$"
)


def normalized_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for path in LOCKS:
        pins = {normalized_name(name): version for name, version in PIN_LINE.findall(path.read_text())}
        if not pins:
            raise SystemExit(f"{path} pins no package (no 'name==version' line)")
        versions.update(pins)
    return versions


def pinned_env_text(path: Path, versions: dict[str, str]) -> str:
    lines = []
    for line in path.read_text().splitlines(keepends=True):
        match = DEPENDENCY_LINE.match(line.rstrip("\n"))
        if match and match["name"].lower() not in NOT_ON_PYPI:
            pypi = normalized_name(PYPI_NAME.get(match["name"].lower(), match["name"]))
            if pypi not in versions:
                raise SystemExit(
                    f"{path}: '{match['name']}' is not in requirements/lock.txt: add it to pyproject.toml, "
                    "then refresh the lock (bash scripts/lock.sh)"
                )
            line = f"{match['indent']}{match['name']}=={versions[pypi]}{match['comment'] or ''}\n"
        lines.append(line)
    return "".join(lines)


def main() -> None:
    versions = locked_versions()
    for path in sorted((REPO_ROOT / "envs").glob("*.yaml")):
        text = pinned_env_text(path, versions)
        if text != path.read_text():
            path.write_text(text)
            print(f"pin_conda_envs: pinned {path.relative_to(REPO_ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
