"""Identify stage: one embedder's queries of every rendering matched against the reference.

Reads the whole-piece reference shards and each rendering's query shards (time summaries at
``identification.frame_hz``), runs every configured matcher the embedder can take
(workflow_scripts/identification/matching.py) for every query length, and writes one row per
query and matcher (``per_query.parquet``) and the figures per rendering, matcher and length
with 95% intervals over pieces (``metrics.json``, ``metrics.tsv``; summary.tsv gathers them).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from workflow_scripts.embedders.registry import declaration
from workflow_scripts.identification.matching import (
    LEARNED,
    MATCHERS,
    NEEDS_KEYS,
    NEEDS_PITCH_CLASSES,
    Recordings,
    fit_projection,
    has_keys,
    query_vectors,
    recordings,
    reference_windows,
)
from workflow_scripts.identification.queries import query_seconds
from workflow_scripts.identification.reference import IdentificationError, read_summarised
from workflow_scripts.identification.scores import misses, per_query_table, summary_figures
from workflow_scripts.plumbing.batch_index import read_batch_indexes
from workflow_scripts.plumbing.io_utils import (
    read_provenance,
    write_json_atomic,
    write_parquet_atomic,
    write_tsv_atomic,
)
from workflow_scripts.plumbing.job_log import job_logger
from workflow_scripts.plumbing.provenance import provenance_record
from workflow_scripts.plumbing.roles import TRAINING_ROLES
from workflow_scripts.stages.summary import interval_text


def measure_starts(manifests: list[str | Path]) -> dict[str, np.ndarray]:
    """Piece -> where its measures start in its recording (from the render provenance)."""
    starts = {}
    for path in manifests:
        provenance = read_provenance(path)
        piece = provenance.get("piece") or {}
        if "measure_starts_s" in piece:
            starts[provenance["piece_id"]] = np.asarray(piece["measure_starts_s"], dtype=np.float64)
    return starts


def query_positions(manifests: list[str | Path]) -> dict[str, dict]:
    """Query id -> its length and start in measures (from the queries stage's provenance)."""
    return {query["query_id"]: query for path in manifests for query in read_provenance(path).get("queries", [])}


def music_groups(groups_tsv: str | Path | None, pieces: list[str]) -> np.ndarray:
    """A label per reference piece: its same-music group from the audit, or itself."""
    group_of = {}
    if groups_tsv is not None:
        table = pd.read_csv(groups_tsv, sep="\t", dtype=str, keep_default_na=False)
        group_of = dict(zip(table["piece_id"], table["music_group"]))
    return np.array([group_of.get(piece) or f"piece:{piece}" for piece in pieces])


def usable_matchers(embedder: str, names: list[str], can_learn: bool = True) -> tuple[list[str], dict[str, str]]:
    """The matchers this embedder can take, and why the others are skipped."""
    view = declaration(embedder).pitch_classes
    skipped = {
        name: f"{embedder} declares no pitch-class view (docs/extending.md)"
        for name in names
        if name in NEEDS_PITCH_CLASSES and view is None
    }
    skipped.update(
        {
            name: f"{embedder}'s pitch-class view is chroma bins, not a roll of keys"
            for name in names
            if name in NEEDS_KEYS and view is not None and not has_keys(view)
        }
    )
    if not can_learn:
        reason = "it learns from the by_piece split's training pieces: add by_piece to splits.names"
        skipped.update({name: reason for name in names if name in LEARNED})
    return [name for name in names if name not in skipped], skipped


def training_pieces(split_path: str | Path | None) -> set[str] | None:
    """The by_piece split's train and validation pieces: all a learned matcher may see."""
    if split_path is None:
        return None
    split = pd.read_parquet(split_path, columns=["piece_id", "role"])
    return set(split.piece_id[split.role.isin(TRAINING_ROLES)])


def learned_projection(reference: Recordings, query_sets: dict[str, Recordings], seconds: float, seen: set[str]):
    """The cosine_lda projection for one query length: each training piece's reference windows
    of that length and its queries in every rendering are one class."""
    windows, owner, _ = reference_windows(reference, seconds)
    pieces = np.array(reference.pieces)[owner]
    keep = np.isin(pieces, list(seen))
    vectors, labels = [windows[keep]], [pieces[keep]]
    for queries in query_sets.values():
        rows = [
            row
            for row, piece in enumerate(queries.pieces)
            if piece in seen and query_seconds(queries.ids[row]) == seconds
        ]
        if rows:
            vectors.append(query_vectors(subset(queries, rows)))
            labels.append(np.array([queries.pieces[row] for row in rows]))
    return fit_projection(np.vstack(vectors), np.concatenate(labels))


def subset(queries: Recordings, rows: list[int]) -> Recordings:
    pick = lambda values: None if values is None else [values[row] for row in rows]  # noqa: E731
    return Recordings(
        ids=pick(queries.ids),
        pieces=pick(queries.pieces),
        frames=pick(queries.frames),
        counts=pick(queries.counts),
        chroma=pick(queries.chroma),
        hz=queries.hz,
        keys=pick(queries.keys),
    )


def identify(
    embedder: str,
    reference_shards: list[str],
    reference_manifests: list[str],
    query_sets: dict[str, tuple[list[str], list[str]]],
    settings: dict,
    groups_tsv: str | Path | None,
    logger,
    seen: set[str] | None = None,
) -> tuple[pd.DataFrame, list[dict], dict[str, str]]:
    """Per-query rows and the figures per rendering, matcher and query length.

    ``query_sets``: rendering -> (its query shards, its query manifests). ``seen``: the pieces
    a learned matcher may train on (None: learned matchers are skipped); their queries are
    reported apart from the others'."""
    matchers, skipped = usable_matchers(embedder, settings["matchers"], can_learn=seen is not None)
    pitch = declaration(embedder).pitch_classes
    needs_chroma = any(name in NEEDS_PITCH_CLASSES for name in matchers)
    chroma_view = pitch if needs_chroma else None
    compression = settings["chroma_compression"]
    roll_compression = settings["roll_compression"] if any(name in NEEDS_KEYS for name in matchers) else None
    reference = recordings(
        read_summarised(reference_shards), settings["layer"], chroma_view, compression, roll_compression
    )
    if not reference.ids:
        raise IdentificationError("the reference holds no piece: every piece was excluded at render")
    measures = measure_starts(reference_manifests)
    groups = music_groups(groups_tsv, reference.pieces)
    queries_of = {
        rendering: recordings(read_summarised(shards), settings["layer"], chroma_view, compression, roll_compression)
        for rendering, (shards, _) in query_sets.items()
    }
    projections = {}
    if any(name in LEARNED for name in matchers):
        projections = {
            seconds: learned_projection(reference, queries_of, seconds, seen) for seconds in settings["query_seconds"]
        }
    tables, rows = [], []
    for rendering, (_, manifests) in query_sets.items():
        queries = queries_of[rendering]
        positions = query_positions(manifests)
        known = [row for row, piece in enumerate(queries.pieces) if piece in set(reference.pieces)]
        for seconds in settings["query_seconds"]:
            chosen = [row for row in known if abs(positions[queries.ids[row]]["seconds"] - seconds) < 1e-3]
            if not chosen:
                continue
            these = subset(queries, chosen)
            starts = np.array([positions[query]["start_measure"] for query in these.ids])
            for matcher in matchers:
                began = time.perf_counter()
                answers = MATCHERS[matcher](
                    reference, these, seconds, {**settings, "projection": projections.get(seconds)}
                )
                elapsed = time.perf_counter() - began
                table = per_query_table(answers, these.ids, these.pieces, starts, reference.pieces, measures, groups)
                table.insert(0, "matcher", matcher)
                table.insert(0, "query_seconds", seconds)
                table.insert(0, "rendering", rendering)
                table["seen_by_matcher"] = matcher in LEARNED and table.piece_id.isin(seen or set())
                tables.append(table)
                for query_pieces, part in query_subsets(table, matcher in LEARNED):
                    figures = summary_figures(part, settings["bootstrap_resamples"], settings["seed"])
                    rows.append(
                        {
                            "rendering": rendering,
                            "matcher": matcher,
                            "query_seconds": seconds,
                            "query_pieces": query_pieces,
                            **figures,
                            "queries_per_second": round(len(these.ids) / max(elapsed, 1e-9), 2),
                            "misses": misses(part),
                        }
                    )
                    log_figures(logger, rendering, matcher, seconds, query_pieces, figures, elapsed)
    per_query = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return per_query, rows, skipped


# Which queries a row's figures are over: every one, or for a learned matcher those of the
# pieces it never saw and, apart, those of its training pieces.
ALL_PIECES, HELD_OUT_PIECES, SEEN_PIECES = "all", "held_out", "seen"


def query_subsets(table: pd.DataFrame, learned: bool):
    if not learned:
        yield ALL_PIECES, table
        return
    for name, part in ((HELD_OUT_PIECES, table[~table.seen_by_matcher]), (SEEN_PIECES, table[table.seen_by_matcher])):
        if len(part):
            yield name, part


def log_figures(logger, rendering, matcher, seconds, query_pieces, figures, elapsed) -> None:
    logger.info(
        "%s %s %gs (%s pieces): top-1 %.3f, top-5 %.3f, MRR %.3f, localised %.3f (%d queries, %.1f s)",
        rendering,
        matcher,
        seconds,
        query_pieces,
        figures["top1"],
        figures["top5"],
        figures["mrr"],
        figures["localised"],
        figures["queries"],
        elapsed,
    )


METRIC_COLUMNS = [
    "rendering",
    "matcher",
    "query_seconds",
    "query_pieces",
    "queries",
    "pieces",
    "top1",
    "top1_ci95",
    "top5",
    "top5_ci95",
    "mrr",
    "mrr_ci95",
    "top1_music_group",
    "localised",
    "localised_ci95",
    "queries_per_second",
]


def metrics_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(
        [{column: row.get(column) for column in METRIC_COLUMNS} for row in rows], columns=METRIC_COLUMNS
    )
    for column in [name for name in METRIC_COLUMNS if name.endswith("_ci95")]:
        table[column] = [interval_text(bounds) for bounds in table[column]]
    return table


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    logger = job_logger("identify", snakemake.log[0])
    params = snakemake.params
    query_sets = {
        rendering: (read_batch_indexes(indexes, "shard"), read_batch_indexes(query_indexes, "manifest"))
        for rendering, indexes, query_indexes in zip(
            params.renderings, params.query_embed_indexes, params.query_indexes
        )
    }
    per_query, rows, skipped = identify(
        params.embedder,
        read_batch_indexes(list(snakemake.input.reference), "shard"),
        read_batch_indexes(list(snakemake.input.reference_renders), "manifest"),
        query_sets,
        params.settings,
        snakemake.input.groups,
        logger,
        seen=training_pieces(snakemake.input.split[0] if snakemake.input.split else None),
    )
    provenance = provenance_record(
        "identify", params.settings, embedder=params.embedder, reference=params.settings["reference"], skipped=skipped
    )
    write_parquet_atomic(pa.Table.from_pandas(per_query, preserve_index=False), snakemake.output.per_query, provenance)
    write_tsv_atomic(metrics_table(rows), snakemake.output.table)
    write_json_atomic(snakemake.output.metrics, {"rows": rows, "skipped": skipped, "provenance": provenance})
