"""From matcher answers to per-query ranks and the closed-set metrics, with intervals over pieces.

A query's rank is 1 + the number of reference pieces that score strictly higher than its own
piece (ties go to the query's favour only when they are exact, which a real score never
hits). With the audit's same-music groups, any piece of the query's group counts as the
answer: the rank is that of the group's best-scoring piece. Localisation asks, of the
correct top-1 answers, whether the match starts within one measure of the query's true start
(both as measure positions of the score, so a tempo deformation does not move it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workflow_scripts.identification.queries import measure_position
from workflow_scripts.probes.metrics import bootstrap_ci

TOP_K = 5
LOCALISED_WITHIN_MEASURES = 1.0


def ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's own piece (``truth``: its column in ``scores``)."""
    own = scores[np.arange(len(truth)), truth]
    return 1 + (scores > own[:, None]).sum(axis=1)


def group_ranks(scores: np.ndarray, truth: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """Rank when any piece of the query's same-music group counts (``group_of``: a label per piece)."""
    in_group = group_of[None, :] == group_of[truth][:, None]
    best_of_group = np.where(in_group, scores, -np.inf).max(axis=1)
    return 1 + (np.where(in_group, -np.inf, scores) > best_of_group[:, None]).sum(axis=1)


def per_query_table(
    answers, query_ids, query_pieces, query_start_measures, reference_pieces, reference_measures, group_of
) -> pd.DataFrame:
    """One row per query: its rank, group rank, top-1 piece and where that match starts."""
    column_of = {piece: index for index, piece in enumerate(reference_pieces)}
    truth = np.array([column_of[piece] for piece in query_pieces])
    top = np.argmax(answers.scores, axis=1)
    matched_s = answers.start_s[np.arange(len(top)), top]
    matched_measure = np.array(
        [
            measure_position(seconds, reference_measures[reference_pieces[piece]]) if np.isfinite(seconds) else np.nan
            for piece, seconds in zip(top, matched_s)
        ]
    )
    rank = ranks(answers.scores, truth)
    return pd.DataFrame(
        {
            "query_id": query_ids,
            "piece_id": query_pieces,
            "rank": rank,
            "rank_music_group": group_ranks(answers.scores, truth, group_of),
            "top1_piece": [reference_pieces[piece] for piece in top],
            "start_measure": query_start_measures,
            "matched_start_s": matched_s,
            "matched_start_measure": matched_measure,
            "localised": (rank == 1) & (np.abs(matched_measure - query_start_measures) <= LOCALISED_WITHIN_MEASURES),
        }
    )


def summary_figures(per_query: pd.DataFrame, resamples: int, seed: int) -> dict:
    """top-1, top-5, MRR (and with same-music groups) and localisation, each with a 95% interval
    from resampling pieces."""
    pieces = per_query["piece_id"].to_numpy()
    rank = per_query["rank"].to_numpy()
    group = per_query["rank_music_group"].to_numpy()
    values = {
        "top1": rank == 1,
        "top5": rank <= TOP_K,
        "mrr": 1.0 / rank,
        "top1_music_group": group == 1,
        "top5_music_group": group <= TOP_K,
        "mrr_music_group": 1.0 / group,
    }
    figures: dict = {"queries": int(len(per_query)), "pieces": int(len(set(pieces)))}
    for offset, (name, value) in enumerate(values.items()):
        value = np.asarray(value, dtype=np.float64)
        figures[name] = float(value.mean()) if len(value) else float("nan")
        figures[f"{name}_ci95"] = list(bootstrap_ci(value, resamples, seed + offset, clusters=pieces))
    correct = rank == 1
    localised = per_query["localised"].to_numpy()[correct].astype(np.float64)
    figures["localised"] = float(localised.mean()) if len(localised) else float("nan")
    figures["localised_ci95"] = list(bootstrap_ci(localised, resamples, seed + 99, clusters=pieces[correct]))
    return figures


def misses(per_query: pd.DataFrame) -> list[dict]:
    """The queries whose top-1 was another piece, by piece: what a ceiling's reader checks."""
    wrong = per_query[per_query["rank"] > 1]
    return wrong[["query_id", "piece_id", "top1_piece", "rank", "rank_music_group"]].to_dict("records")
