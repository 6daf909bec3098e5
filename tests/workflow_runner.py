"""Run the real workflow in a temporary folder, as a user would from the command line."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# Four short real chorales: enough for every split to have train and test pieces.
FOUR_CHORALES = ("bwv2.6", "bwv3.6", "bwv4.8", "bwv6.6")


RULE_HEADER = re.compile(r"^\s*rule(?:\s+(\w+))?\s*:\s*$", re.MULTILINE)
GENERATED_NAME = re.compile(r"^\s*name:\s*\n\s*f?\"([^\"]+)\"", re.MULTILINE)


def local_rule_patterns() -> list[re.Pattern]:
    """Rules the workflow declares ``localrule: True``, read from its own sources.

    A generated rule's name (``f"fetch_model_{embedder}"``) becomes a pattern with its
    placeholders as wildcards, so a test of where jobs ran never keeps its own list.
    """
    patterns = []
    for source in [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "rules").glob("*.smk"))]:
        text = source.read_text()
        headers = list(RULE_HEADER.finditer(text))
        for header, following in zip(headers, [*headers[1:], None]):
            block = text[header.end() : following.start() if following else len(text)]
            if "localrule: True" not in block:
                continue
            name = header.group(1) or GENERATED_NAME.search(block).group(1)
            patterns.append(re.compile(re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(name))))
    return patterns


def music21_chorale(name: str) -> Path:
    from workflow_scripts.stages.corpus import music21_corpus_folder

    return music21_corpus_folder("bach") / f"{name}.mxl"


def make_project(folder: Path, overrides: dict | None = None, pieces: tuple[str, ...] = FOUR_CHORALES) -> Path:
    """A project folder: a score folder of ``pieces`` and a config (test defaults + ``overrides``)."""
    (folder / "scores").mkdir(parents=True)
    for name in pieces:
        shutil.copy(music21_chorale(name), folder / "scores" / f"{name}.mxl")
    write_config(folder, overrides or {})
    return folder


def write_config(folder: Path, overrides: dict) -> Path:
    config = {
        "corpus": {"source": "folder", "folder": str(folder / "scores")},
        # The tests' own default; config.yaml's adds basic_pitch and pianoroll (tests/test_workflow.py runs them).
        "embedders": ["spectral"],
        "render": {"pieces_per_job": 2},
        "embed": {"pieces_per_job": 2},
        "probes": {
            "linear_adam": {"optimizer": "adam", "epochs": 100},
            # config.yaml's fast probe: kind logistic, its L2 chosen on validation.
            "linear_lbfgs_std": {"kind": "logistic"},
        },
        "sweep": {
            "base": {"optimizer": "adam", "early_stopping": True, "epochs": 60, "patience": 10},
            "grid": {"head": ["linear", "mlp"]},
        },
        "cache_dir": "results/cache",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def snakemake_command(folder: Path, *arguments: str) -> list[str]:
    """The command line a user would type for ``folder``: the repository's Snakefile, the folder's config."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        *arguments,
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(folder / "config.yaml"),
    ]


def snakemake(
    folder: Path, *arguments: str, check: bool = True, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        snakemake_command(folder, *arguments), capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(arguments)} failed:\n{completed.stdout[-6000:]}\n{completed.stderr[-6000:]}"
        )
    return completed


def planned_jobs(folder: Path, env: dict | None = None) -> dict[str, int]:
    """Rule name -> job count of a dry run."""
    output = snakemake(folder, "--dry-run", "--quiet", "rules", env=env).stdout
    jobs = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


def planned_outputs(folder: Path) -> list[str]:
    """Every output file of the jobs a dry run would run."""
    output = snakemake(folder, "--dry-run").stdout
    paths = []
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("output:"):
            paths += [path.strip() for path in stripped.removeprefix("output:").split(",") if path.strip()]
    return paths
