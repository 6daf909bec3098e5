"""The report's identification section: a heatmap of top-1, a table with intervals, top-1
against query length, the misses, and the paragraph that sets the task beside by_snippet and
by_piece with the same embedding's figures on each.

It reads summary.tsv's identification rows (workflow_scripts/stages/summary.py), so the page
and the table can never disagree.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.stages.summary import IDENTIFICATION_SPLIT

CAPTION = (
    "Each query is an excerpt of a whole-piece rendering, cut at a seeded random time (not on a measure boundary); "
    "the reference holds every piece once, in the reference rendering. Top-1, top-5 and MRR are over the closed set "
    "of reference pieces; 'same music' counts any piece of the audit's same-music group as correct; 'localised' is "
    "the share of correct top-1 answers whose match starts within one measure of the query's true start. 95% "
    "intervals resample pieces."
)


def identification_rows(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary.split == IDENTIFICATION_SPLIT]


def combination(rows: pd.DataFrame) -> pd.Series:
    """embedder / matcher, with a learned matcher's query pieces: "pianoroll / cosine_lda (held_out)"."""
    pieces = rows.query_pieces.fillna("all") if "query_pieces" in rows else pd.Series("all", index=rows.index)
    return rows.embedder + " / " + rows.probe + np.where(pieces != "all", " (" + pieces.astype(str) + ")", "")


def top1_grid(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows: query renderings in the run's order; columns: embedder / matcher; cells: top-1."""
    rows = rows.assign(combination=combination(rows))
    grid = rows.pivot_table(index="variant", columns="combination", values="top1", sort=False)
    return grid.reindex(index=list(dict.fromkeys(rows.variant)), columns=list(dict.fromkeys(rows.combination)))


def plot_heatmap(grid: pd.DataFrame, seconds: float, destination) -> None:
    from workflow_scripts.probes.plots import _save, plt

    figure, axis = plt.subplots(figsize=(1.0 * len(grid.columns) + 2.5, 0.45 * len(grid.index) + 1.8))
    image = axis.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (row, column), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            axis.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                      color="black" if value > 0.6 else "white")  # fmt: skip
    # One line per part ("spectral", "cosine_lda", "(held_out)"): a column is an inch wide.
    labels = [name.replace(" / ", "\n").replace(" (", "\n(") for name in grid.columns]
    axis.set_xticks(range(len(grid.columns)), labels, fontsize=7)
    axis.set_yticks(range(len(grid.index)), grid.index, fontsize=8)
    axis.set_title(f"identification top-1 (%), {seconds:g}-s queries", fontsize=9, loc="left")
    figure.colorbar(image, ax=axis, fraction=0.03)
    _save(figure, destination)


def cell_text(row: Any) -> str:
    from workflow_scripts.stages.report import interval  # the page's own parser; it imports this module

    low, high = interval(row.top1_ci95)
    return f"{100 * row.top1:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def interval_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The heatmap's cells with their intervals, plus MRR, same-music top-1 and localisation."""
    return pd.DataFrame(
        {
            "rendering": rows.variant,
            "embedder / matcher": combination(rows),
            "top-1 % [95% CI]": [cell_text(row) for row in rows.itertuples()],
            "top-5": rows.top5,
            "MRR": rows.mrr,
            "top-1, same music": rows.top1_music_group,
            "localised": rows.localised,
            "queries": rows.queries.astype(int),
        }
    )


def length_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Top-1 against query length: per embedder / matcher, the mean over the deformations
    (every query rendering but the reference itself) and the worst deformation."""
    deformed = rows[rows.variant != rows.train_variants]
    deformed = deformed if len(deformed) else rows
    table = deformed.assign(combination=combination(deformed)).groupby(["combination", "query_seconds"], sort=False)
    return (
        table.top1.agg(mean="mean", worst="min")
        .reset_index()
        .pivot_table(index="combination", columns="query_seconds", values=["mean", "worst"], sort=False)
        .pipe(lambda frame: frame.set_axis([f"{kind} top-1, {seconds:g} s" for kind, seconds in frame.columns], axis=1))
        .reset_index()
        .rename(columns={"combination": "embedder / matcher"})
    )


def comparison_paragraph(rows: pd.DataFrame, summary: pd.DataFrame, maps: dict, best_row) -> str:
    """What by_snippet, by_piece and identification ask, and what each embedding scores on each."""
    longest = rows.query_seconds.max()
    reference = rows.train_variants.iloc[0]
    deformed = rows[(rows.query_seconds == longest) & (rows.variant != rows.train_variants)]
    parts = []
    for embedder, group in deformed[deformed.query_pieces.fillna("all") != "seen"].groupby("embedder", sort=False):
        means = group.assign(shown=combination(group)).groupby("shown", sort=False).top1.mean()
        means.index = [name.split(" / ", 1)[1] for name in means.index]
        probes = summary[(summary.embedder == embedder) & (summary.variant == reference)]
        by_snippet = best_row(probes[(probes.split == "by_snippet") & (probes.train_variants == reference)])
        retrieval = (maps.get((embedder, reference)) or {}).get("raw")
        parts.append(
            f"{html.escape(embedder)}: by_snippet "
            + (f"{100 * by_snippet.top1:.1f}%" if by_snippet is not None else "not run")
            + ", by_piece MAP "
            + (f"{retrieval:.3f}" if retrieval is not None else "not run")
            + f", identification {100 * means.max():.1f}% ({html.escape(means.idxmax())}, mean over deformations)"
        )
    return (
        "<p>The three tasks ask different things of one embedding. <strong>by_snippet</strong> names a piece from "
        "passages never heard, with every piece's other passages as training data: it needs the piece's style and "
        "material, not the passage. <strong>by_piece</strong> retrieves other passages of pieces never seen: it "
        "needs an embedding whose neighbourhoods are pieces. <strong>Identification</strong> recognises a passage "
        "of a piece it holds in full, played with another sound, key or tempo: it needs the embedding to keep the "
        f"music and drop the sound. On the reference rendering ({html.escape(reference)}), "
        f"{longest:g}-s queries: " + "; ".join(parts) + ".</p>"
    )


def misses_table(rows: pd.DataFrame, metric_paths: list[str]) -> pd.DataFrame:
    """Every wrong top-1 of each embedder's best matcher at the longest length (the mean top-1
    over renderings decides), by piece: what a reader of a ceiling checks first."""
    longest = rows[rows.query_seconds == rows.query_seconds.max()]
    longest = longest[longest.query_pieces.fillna("all") != "seen"]
    best = longest.groupby(["embedder", "probe"], sort=False).top1.mean().reset_index()
    best = best.sort_values("top1", ascending=False, kind="stable").drop_duplicates("embedder")
    chosen = set(zip(best.embedder, best.probe))
    found = []
    for path in metric_paths:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
        embedder = metrics["provenance"]["embedder"]
        for figures in metrics["rows"]:
            if (
                (embedder, figures["matcher"]) in chosen
                and figures["query_seconds"] == longest.query_seconds.iloc[0]
                and figures.get("query_pieces", "all") != "seen"
            ):
                found += [
                    {
                        "embedder / matcher": f"{embedder} / {figures['matcher']}",
                        "rendering": figures["rendering"],
                        **miss,
                    }
                    for miss in figures["misses"]
                ]
    return pd.DataFrame(found)


def identification_section(
    summary: pd.DataFrame, maps: dict, metric_paths: list[str], output_folder: Path, best_row
) -> str:
    rows = identification_rows(summary)
    if not len(rows):
        return ""
    longest = rows.query_seconds.max()
    at_longest = rows[rows.query_seconds == longest]
    heatmap = output_folder / "identification.png"
    # A learned matcher's training pieces are in the table, not the heatmap.
    plot_heatmap(top1_grid(at_longest[at_longest.query_pieces.fillna("all") != "seen"]), longest, heatmap)
    # The page's own helpers; imported here because the report imports this module.
    from workflow_scripts.stages.report import image_tag, table_html

    missed = misses_table(rows, metric_paths)

    return (
        "<section id='identification'><h2>Identifying known music</h2>"
        + f"<p class='note'>{CAPTION}</p>"
        + comparison_paragraph(rows, summary[summary.split != IDENTIFICATION_SPLIT], maps, best_row)
        + image_tag(heatmap, "identification top-1 per deformation and embedder / matcher")
        + "<h3>Top-1 against query length (deformations only)</h3>"
        + table_html(length_table(rows))
        + f"<details><summary>Every cell at {longest:g} s, with intervals</summary>"
        + table_html(interval_table(at_longest))
        + "</details>"
        + f"<details><summary>Misses of each embedder's best matcher at {longest:g} s ({len(missed)})</summary>"
        + (table_html(missed) if len(missed) else "<p>none</p>")
        + "</details></section>"
    )
