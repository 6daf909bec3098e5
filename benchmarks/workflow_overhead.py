"""Snakemake overhead: dry-run time, no-op rerun time and job count, at two corpus sizes.

- The real corpus: run from the repository (after a complete run, for the no-op figure).
- A synthetic corpus of ``--synthetic`` pieces: a folder of that many score files (links
  to one chorale, never parsed by a dry run), to show how start-up scales.

Targets: no-op <= 3 s and dry-run <= 5 s at ~430 pieces; dry-run <= 15 s at 10,000.

Start-up times on a small shared machine swing by a second from one minute to the next,
so each figure is the median of several rounds after a warm-up round, printed with its
range, beside Snakemake's own floor timed in the same rounds: a workflow of one rule with
one output and one parameter, up to date, which no workflow can beat on that machine. The
overhead above the floor is the median of the per-round differences.

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


@dataclass
class Command:
    arguments: list[str]
    cwd: Path


def run_once(command: Command) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run(
        SNAKEMAKE + command.arguments, cwd=command.cwd, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(
            f"{' '.join(command.arguments)} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return elapsed, completed.stdout + completed.stderr


def timed_in_turn(commands: dict[str, Command], repeats: int) -> dict[str, Timing]:
    """Each command once per round, in turn, so that every figure (and the floor) sees the
    same moments of a machine whose speed drifts; one warm-up round first."""
    for command in commands.values():
        run_once(command)
    runs: dict[str, list[tuple[float, str]]] = {label: [] for label in commands}
    for _ in range(repeats):
        for label, command in commands.items():
            runs[label].append(run_once(command))
    return {label: Timing([elapsed for elapsed, _ in done], done[-1][1]) for label, done in runs.items()}


def job_count(output: str) -> int:
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return 0


def overhead_above_floor(timing: Timing, floor: Timing) -> str:
    return f"{statistics.median(t - f for t, f in zip(timing.times, floor.times, strict=True)):+.2f} s"


def measure(label: str, arguments: list[str], repeats: int, noop: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "Snakefile").write_text(FLOOR_SNAKEFILE)
        run_once(Command(["--cores", "1", "--quiet"], Path(scratch)))
        commands = {
            "floor": Command(["--cores", "2"], Path(scratch)),
            "dry-run": Command(["--dry-run", "--quiet", "rules", *arguments], REPO),
        }
        if noop:
            commands["no-op run"] = Command(["--cores", "2", "--resources", "gpu=1", *arguments], REPO)
        timings = timed_in_turn(commands, repeats)
    floor = timings.pop("floor")
    print(f"{label}: {job_count(timings['dry-run'].output)} jobs to run")
    for name, timing in timings.items():
        print(f"  {name}: {timing}; above Snakemake's floor: {overhead_above_floor(timing, floor)}")
    print(f"  Snakemake's floor (one up-to-date rule, no-op), in the same rounds: {floor}")
    if noop and "Nothing to be done" not in timings["no-op run"].output:
        print("  WARNING: the no-op run did work; rerun the benchmark after a complete run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=int, default=10000, help="pieces in the synthetic corpus (0: skip it)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds, after one warm-up round")
    arguments = parser.parse_args()

    complete = (REPO / "results/summary.tsv").exists()
    measure("music21 Bach corpus (config.yaml)", [], arguments.repeats, noop=complete)
    if not complete:
        print("  (no complete run in results/: run the workflow first for the no-op figure)")

    if arguments.synthetic <= 0:
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        scores = scratch / "scores"
        scores.mkdir()
        from workflow_scripts.stages.corpus import music21_corpus_folder

        chorale = music21_corpus_folder("bach") / "bwv1.6.mxl"
        for index in range(arguments.synthetic):
            os.symlink(chorale, scores / f"piece{index:05d}.mxl")
        (scratch / "config.yaml").write_text(f"corpus:\n  source: folder\n  folder: {scores}\n")
        measure(
            f"synthetic corpus of {arguments.synthetic} pieces",
            [
                "--snakefile",
                str(REPO / "Snakefile"),
                "--directory",
                str(scratch),
                "--configfile",
                str(scratch / "config.yaml"),
            ],
            arguments.repeats,
            noop=False,
        )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
