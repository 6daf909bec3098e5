"""What the render, embed and pianoroll tests give ``render_batch``: one piano setting and
the job dictionaries the render stage's ``main`` builds from its rule (piece, score, outputs)."""

from __future__ import annotations

from pathlib import Path

from workflow_scripts.stages.render import RenderSettings

PIANO = RenderSettings(
    sample_rate=24000,
    tempo_qpm=120,
    window_measures=4,
    hop_measures=4,
    programs=(0,),
    velocity=90,
    transpose=0,
    gain=0.3,
)


def render_jobs(sources: dict[str, Path], out: Path) -> list[dict[str, str]]:
    """One job per piece id -> score file, its audio and manifest under ``out``."""
    return [
        {
            "piece_id": name,
            "source": str(source),
            "audio": str(out / f"{name}.flac"),
            "manifest": str(out / f"{name}.snippets.parquet"),
        }
        for name, source in sources.items()
    ]
