"""Retrieval on held-out pieces: does a snippet find the other snippets of its piece?

Each held-out snippet queries every other held-out snippet (itself excluded) ranked by
cosine similarity; the relevant ones are the snippets of the same piece (strict) and,
beside it, the snippets of any piece the corpus audit finds to be the same music (two
files of one chorale under two ids). Per query: average precision, the rank of the first
relevant snippet (R1; its mean is MR1), its reciprocal (mean: MRR), and hits at 1/5/10.
Queries without another relevant held-out snippet cannot be scored and are counted.

Ties: snippets with exactly equal similarity (identical embeddings exist: the same music
under two ids) form a block that is retrieved at once, and every snippet of a block takes
the block's last rank (the number of snippets scoring at least as high). Average precision
and the first relevant rank both use this rule; for average precision it is scikit-learn's
``average_precision_score`` (a test checks they agree), and it never rewards a tie.

Intervals are percentile bootstraps over held-out pieces: every query of a resampled
piece goes in together, because the queries of one piece are correlated and the claim is
about pieces not seen in training.

Representations: ``raw`` embeddings, ``standardized`` with statistics of the training
pieces, ``lda``, a linear projection learned on the training pieces only (scikit-
learn's shrinkage LDA), and ``metric_head``, a projection trained with a supervised
contrastive loss (workflow_scripts/probes/metric_learning.py), so learned projections are judged
on pieces they never saw. For each, the ROC AUC of "same piece" from cosine and Euclidean
distance among the held-out snippets shows the geometry before and after learning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.plumbing.roles import TRAINING_ROLES
from workflow_scripts.probes.metric_learning import HeadSettings
from workflow_scripts.probes.metrics import RESAMPLED_QUERIES_BY_PIECE, bootstrap_ci
from workflow_scripts.probes.preconditions import NOT_RUN, RAN, refusal

HITS_AT = (1, 5, 10)


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def tie_block_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score when ties share their block's last rank: the number of
    scores at least as high (scipy's ``rankdata(-scores, method="max")``)."""
    ascending = np.sort(scores)
    return scores.size - np.searchsorted(ascending, scores, side="left")


def average_precision(relevant: np.ndarray, ranks: np.ndarray) -> float:
    """Mean, over the relevant items, of the precision at their (tie-block) rank."""
    relevant_ranks = np.sort(ranks[relevant])
    relevant_at_or_above = np.searchsorted(relevant_ranks, relevant_ranks, side="right")
    return float(np.mean(relevant_at_or_above / relevant_ranks))


QUERY_COLUMNS = [
    "query",
    "piece",
    "average_precision",
    "first_relevant_rank",
    "reciprocal_rank",
    *[f"hit_at_{k}" for k in HITS_AT],
]


def per_query_metrics(
    similarities: np.ndarray, labels: np.ndarray, relevance_units: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per scorable query. ``labels`` are the pieces; ``relevance_units`` (default:
    the pieces) decide what counts as relevant, e.g. same-music groups."""
    units = labels if relevance_units is None else np.asarray(relevance_units)
    rows = []
    for query in range(len(labels)):
        others = np.arange(len(labels)) != query
        relevant = units[others] == units[query]
        if not relevant.any():
            continue
        ranks = tie_block_ranks(similarities[query, others])
        first_rank = int(ranks[relevant].min())
        rows.append(
            {
                "query": query,
                "piece": labels[query],
                "average_precision": average_precision(relevant, ranks),
                "first_relevant_rank": first_rank,
                "reciprocal_rank": 1.0 / first_rank,
                **{f"hit_at_{k}": float(first_rank <= k) for k in HITS_AT},
            }
        )
    return pd.DataFrame(rows, columns=QUERY_COLUMNS)


def summarise_queries(per_query: pd.DataFrame, queries_total: int, resamples: int, seed: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "queries": int(len(per_query)),
        "queries_without_relevant": int(queries_total - len(per_query)),
    }
    named = {
        "map": "average_precision",
        "mr1": "first_relevant_rank",
        "mrr": "reciprocal_rank",
        **{f"hr@{k}": f"hit_at_{k}" for k in HITS_AT},
    }
    pieces = per_query["piece"].to_numpy()
    for offset, (name, column) in enumerate(named.items()):
        values = per_query[column].to_numpy(dtype=float)
        summary[name] = float(values.mean()) if len(values) else float("nan")
        summary[f"{name}_ci95"] = bootstrap_ci(values, resamples, seed + offset, clusters=pieces)
    summary["ci95_resampling"] = RESAMPLED_QUERIES_BY_PIECE
    return summary


def same_music_units(pieces: np.ndarray, music_group_of: dict[str, str]) -> np.ndarray:
    """Each snippet's same-music group from the audit, or its own piece when it has none."""
    return np.array([music_group_of.get(piece) or piece for piece in pieces])


def representations(
    vectors: np.ndarray,
    pieces: np.ndarray,
    roles: np.ndarray,
    head_settings: HeadSettings | None = None,
    logger=None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Held-out vectors in each representation, fitted on training pieces only.

    ``standardized`` and ``lda`` are fitted on the train and validation pieces; the metric
    head trains on the train pieces and picks its epoch on the validation pieces.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    training = np.isin(roles, TRAINING_ROLES)
    train, train_labels, held_out = vectors[training], pieces[training], vectors[roles == "test"]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    standardized = (held_out - mean) / std
    result = {"raw": held_out, "standardized": standardized}
    classes = len(np.unique(train_labels))
    if classes >= 3:
        components = int(min(classes - 1, train.shape[1], 128))
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto", n_components=components)
        lda.fit((train - mean) / std, train_labels)
        result["lda"] = lda.transform(standardized)
    head_facts: dict[str, Any] = {}
    if head_settings is not None and head_settings.enabled:
        from workflow_scripts.probes.metric_learning import project, train_head

        fit, select = roles == "train", roles == "validation"
        head, history, head_facts = train_head(
            vectors[fit], pieces[fit], vectors[select], pieces[select], head_settings, logger
        )
        result["metric_head"] = project(head, held_out)
        head_facts["history"] = history
    return result, head_facts


def evaluate_retrieval(
    vectors: np.ndarray,
    pieces: np.ndarray,
    roles: np.ndarray,
    resamples: int,
    seed: int,
    head_settings: HeadSettings | None = None,
    logger=None,
    music_group_of: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Per-query table, summary (one row per representation) and, for figures, the
    held-out distance samples per representation and the metric head's history.

    With ``music_group_of`` (piece -> same-music group, from the audit) each row also holds
    ``same_music``: the same figures when a snippet of the same music counts as relevant."""
    from workflow_scripts.probes.geometry import layer_geometry

    held_out = roles == "test"
    if not held_out.any():
        raise ValueError("the split holds out no piece (no test role): retrieval needs held-out pieces")
    spaces, head_facts = representations(vectors, pieces, roles, head_settings, logger)
    rows, tables, distance_samples = [], [], {}
    held_out_pieces = pieces[held_out]
    for name, space in spaces.items():
        similarities = cosine_similarities(space)
        per_query = per_query_metrics(similarities, held_out_pieces)
        per_query.insert(0, "relevance", "piece")
        per_query.insert(0, "representation", name)
        tables.append(per_query)
        geometry, samples = layer_geometry(space, held_out_pieces)
        distance_samples[name] = samples["cosine"]
        row = {
            "representation": name,
            **summarise_queries(per_query, int(held_out.sum()), resamples, seed),
            "auc_cosine": geometry["auc_cosine"],
            "auc_euclidean": geometry["auc_euclidean"],
        }
        if music_group_of is not None:
            units = same_music_units(held_out_pieces, music_group_of)
            same_music = per_query_metrics(similarities, held_out_pieces, units)
            same_music.insert(0, "relevance", "same_music")
            same_music.insert(0, "representation", name)
            tables.append(same_music)
            row["same_music"] = summarise_queries(same_music, int(held_out.sum()), resamples, seed)
        rows.append(row)
    training = np.isin(roles, TRAINING_ROLES)
    summary = {
        "held_out_pieces": int(len(np.unique(pieces[held_out]))),
        "held_out_snippets": int(held_out.sum()),
        "training_pieces": int(len(np.unique(pieces[training]))),
        "results": rows,
    }
    history = head_facts.pop("history", None)
    if head_facts:
        summary["metric_head"] = head_facts
    return (
        pd.concat(tables, ignore_index=True),
        summary,
        {"distance_samples": distance_samples, "head_history": history},
    )


def not_run_reason(preconditions_path: str, split: str, metric_head: bool) -> str | None:
    """Why the split's preconditions (workflow_scripts/probes/preconditions.py) refuse retrieval, or None."""
    import json
    from pathlib import Path

    record = json.loads(Path(preconditions_path).read_text(encoding="utf-8"))
    return refusal(record, split, ["retrieval", "metric_head"] if metric_head else ["retrieval"])


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import (
        read_provenance,
        write_json_atomic,
        write_parquet_atomic,
        write_tsv_atomic,
    )
    from workflow_scripts.plumbing.job_log import job_logger
    from workflow_scripts.plumbing.provenance import provenance_record
    from workflow_scripts.pooling import pooled_embeddings, read_dataset
    from workflow_scripts.probes.layers import select_layer
    from workflow_scripts.probes.plots import plot_representation_distances

    logger = job_logger("retrieval", snakemake.log[0])
    settings = snakemake.params.settings
    head_settings = HeadSettings.from_config(settings["metric_head"])
    embedder = read_provenance(snakemake.input.dataset)["embedder"]
    provenance = provenance_record("retrieval", settings, embedder=embedder, wildcards=dict(snakemake.wildcards))
    title = " / ".join(dict(snakemake.wildcards).values())
    reason = not_run_reason(snakemake.input.preconditions, snakemake.wildcards.split, head_settings.enabled)
    if reason:
        # The preconditions job has said why; this one records it where the figures would be.
        from workflow_scripts.probes.plots import plot_not_run

        logger.info("not run: the split fails retrieval's preconditions (%s)", snakemake.input.preconditions)
        write_json_atomic(
            snakemake.output.metrics, {"status": NOT_RUN, "reason": reason, "results": [], "provenance": provenance}
        )
        empty = pd.DataFrame(columns=["representation", "relevance", *QUERY_COLUMNS, "snippet_id"])
        write_parquet_atomic(pa.Table.from_pandas(empty, preserve_index=False), snakemake.output.per_query, provenance)
        write_tsv_atomic(pd.DataFrame(columns=["epoch", "loss", "validation_map"]), snakemake.output.head_curve)
        plot_not_run(snakemake.output.distances_png, title, reason)
        return
    if head_settings.enabled:
        import torch

        torch.set_num_threads(snakemake.threads)
    table = read_dataset(snakemake.input.dataset, settings["pooling"])
    pooled = pooled_embeddings(table, embedder, settings["pooling"], where=str(snakemake.input.dataset))
    vectors = select_layer(pooled, settings["layer"])[:, 0, :]
    assignment = pq.read_table(snakemake.input.assignment).to_pandas().set_index("snippet_id")
    snippet_ids = table.column("snippet_id").to_pylist()
    roles = assignment.role.reindex(snippet_ids).fillna("unassigned").to_numpy()
    pieces = np.array(table.column("piece_id").to_pylist())
    groups = pd.read_csv(snakemake.input.groups, sep="\t", keep_default_na=False)
    per_query, summary, figures = evaluate_retrieval(
        vectors,
        pieces,
        roles,
        settings["bootstrap_resamples"],
        settings["seed"],
        head_settings,
        logger,
        music_group_of=groups.set_index("piece_id")["music_group"].to_dict(),
    )
    per_query["snippet_id"] = np.array(snippet_ids)[roles == "test"][per_query["query"].to_numpy()]
    write_json_atomic(snakemake.output.metrics, {"status": RAN, **summary, "provenance": provenance})
    write_parquet_atomic(pa.Table.from_pandas(per_query, preserve_index=False), snakemake.output.per_query, provenance)
    history = figures["head_history"]
    write_tsv_atomic(
        history if history is not None else pd.DataFrame(columns=["epoch", "loss", "validation_map"]),
        snakemake.output.head_curve,
    )
    plot_representation_distances(
        figures["distance_samples"], summary["results"], snakemake.output.distances_png, title
    )
    for row in summary["results"]:
        logger.info(
            "%s: MAP %.4f, MR1 %.2f, AUC %.3f", row["representation"], row["map"], row["mr1"], row["auc_cosine"]
        )
