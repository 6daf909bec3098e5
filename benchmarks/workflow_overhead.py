"""Snakemake overhead: dry-run time, no-op rerun time and job count, at two corpus sizes.

- The real corpus: run from the repository (after a complete run, for the no-op figure).
- A synthetic corpus of ``--synthetic`` pieces: a folder of that many score files (links
  to one chorale, never parsed by a dry run), to show how start-up scales.

Targets: no-op <= 3 s and dry-run <= 5 s at ~430 pieces; dry-run <= 15 s at 10,000.

Start-up times on a small shared machine swing by a second from one minute to the next,
so each figure is the median of several runs after one warm-up, printed with its range,
beside Snakemake's own floor measured in the same run: a workflow of one rule with one
output and one parameter, up to date, which no workflow can beat on that machine.

    .venv/bin/python benchmarks/workflow_overhead.py --synthetic 10000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


FLOOR_SNAKEFILE = """\
rule up_to_date:
    output: "done.txt"
    params: setting=1
    shell: "echo done > {output}"
"""


@dataclass
class Timing:
    times: list[float]
    output: str

    def __str__(self) -> str:
        return f"{statistics.median(self.times):.2f} s (range {min(self.times):.2f}-{max(self.times):.2f})"


def run_once(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return elapsed, completed.stdout + completed.stderr


def timed(command: list[str], cwd: Path, repeats: int) -> Timing:
    run_once(command, cwd)  # warm-up: the first start after a pause reads every module from disk
    runs = [run_once(command, cwd) for _ in range(repeats)]
    return Timing([elapsed for elapsed, _ in runs], runs[-1][1])


def snakemake_floor(repeats: int) -> Timing:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "Snakefile").write_text(FLOOR_SNAKEFILE)
        run_once(SNAKEMAKE + ["--cores", "1", "--quiet"], Path(scratch))
        return timed(SNAKEMAKE + ["--cores", "2"], Path(scratch), repeats)


def job_count(output: str) -> int:
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return 0


def measure(label: str, arguments: list[str], cwd: Path, repeats: int, noop: bool) -> None:
    dry = timed(SNAKEMAKE + ["--dry-run", "--quiet", "rules", *arguments], cwd, repeats)
    print(f"{label}: dry-run {dry}, {job_count(dry.output)} jobs to run", end="")
    if noop:
        rerun = timed(SNAKEMAKE + ["--cores", "2", "--resources", "gpu=1", *arguments], cwd, repeats)
        print(f"; no-op run {rerun} ({'nothing to be done' if 'Nothing to be done' in rerun.output else 'WORK WAS DONE'})", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=int, default=10000, help="pieces in the synthetic corpus (0: skip it)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure, after one warm-up")
    arguments = parser.parse_args()

    print(f"Snakemake's floor (one up-to-date rule): no-op run {snakemake_floor(arguments.repeats)}")

    complete = (REPO / "results/summary.tsv").exists()
    measure("music21 Bach corpus (config.yaml)", [], REPO, arguments.repeats, noop=complete)
    if not complete:
        print("  (no complete run in results/: run the workflow first for the no-op figure)")

    if arguments.synthetic <= 0:
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        scores = scratch / "scores"
        scores.mkdir()
        from workflow_scripts.corpus import music21_corpus_folder

        chorale = music21_corpus_folder("bach") / "bwv1.6.mxl"
        for index in range(arguments.synthetic):
            os.symlink(chorale, scores / f"piece{index:05d}.mxl")
        (scratch / "config.yaml").write_text(f"corpus:\n  source: folder\n  folder: {scores}\n")
        measure(
            f"synthetic corpus of {arguments.synthetic} pieces",
            ["--snakefile", str(REPO / "Snakefile"), "--directory", str(scratch), "--configfile", str(scratch / "config.yaml")],
            REPO, arguments.repeats, noop=False,
        )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
