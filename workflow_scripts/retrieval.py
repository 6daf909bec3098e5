"""Retrieval on held-out pieces: does a snippet find the other snippets of its piece?

Each held-out snippet queries every other held-out snippet (itself excluded) ranked by
cosine similarity; the relevant ones are the snippets of the same piece. Per query:
average precision (scikit-learn), the rank of the first relevant snippet (R1; its mean is
MR1), its reciprocal (mean: MRR), and hits at 1/5/10. Queries whose piece has no other
held-out snippet cannot be scored and are counted. Intervals are percentile bootstraps
over queries.

Representations: ``raw`` embeddings, ``standardized`` with statistics of the training
pieces, ``lda``, a linear projection learned on the training pieces only (scikit-
learn's shrinkage LDA), and ``metric_head``, a projection trained with a supervised
contrastive loss (workflow_scripts/metric_learning.py), so learned projections are judged
on pieces they never saw. For each, the ROC AUC of "same piece" from cosine and Euclidean
distance among the held-out snippets shows the geometry before and after learning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from workflow_scripts.metric_learning import HeadSettings
from workflow_scripts.metrics import bootstrap_ci
from workflow_scripts.roles import TRAINING_ROLES

HITS_AT = (1, 5, 10)


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def per_query_metrics(similarities: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    rows = []
    for query in range(len(labels)):
        others = np.arange(len(labels)) != query
        relevant = labels[others] == labels[query]
        if not relevant.any():
            continue
        scores = similarities[query, others]
        order = np.argsort(-scores, kind="stable")
        first_rank = int(np.flatnonzero(relevant[order])[0]) + 1
        rows.append(
            {
                "query": query,
                "average_precision": float(average_precision_score(relevant, scores)),
                "first_relevant_rank": first_rank,
                "reciprocal_rank": 1.0 / first_rank,
                **{f"hit_at_{k}": float(first_rank <= k) for k in HITS_AT},
            }
        )
    return pd.DataFrame(rows, columns=["query", "average_precision", "first_relevant_rank", "reciprocal_rank", *[f"hit_at_{k}" for k in HITS_AT]])


def summarise_queries(per_query: pd.DataFrame, queries_total: int, resamples: int, seed: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"queries": int(len(per_query)), "queries_without_relevant": int(queries_total - len(per_query))}
    named = {"map": "average_precision", "mr1": "first_relevant_rank", "mrr": "reciprocal_rank", **{f"hr@{k}": f"hit_at_{k}" for k in HITS_AT}}
    for offset, (name, column) in enumerate(named.items()):
        values = per_query[column].to_numpy(dtype=float)
        summary[name] = float(values.mean()) if len(values) else float("nan")
        summary[f"{name}_ci95"] = bootstrap_ci(values, resamples, seed + offset)
    return summary


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
        from workflow_scripts.metric_learning import project, train_head

        fit, select = roles == "train", roles == "validation"
        head, history, head_facts = train_head(vectors[fit], pieces[fit], vectors[select], pieces[select], head_settings, logger)
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
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Per-query table, summary (one row per representation) and, for figures, the
    held-out distance samples per representation and the metric head's history."""
    from workflow_scripts.geometry import layer_geometry

    held_out = roles == "test"
    if not held_out.any():
        raise ValueError("the split holds out no piece (no test role): retrieval needs held-out pieces")
    spaces, head_facts = representations(vectors, pieces, roles, head_settings, logger)
    rows, tables, distance_samples = [], [], {}
    for name, space in spaces.items():
        per_query = per_query_metrics(cosine_similarities(space), pieces[held_out])
        per_query.insert(0, "representation", name)
        tables.append(per_query)
        geometry, samples = layer_geometry(space, pieces[held_out])
        distance_samples[name] = samples["cosine"]
        rows.append({
            "representation": name,
            **summarise_queries(per_query, int(held_out.sum()), resamples, seed),
            "auc_cosine": geometry["auc_cosine"],
            "auc_euclidean": geometry["auc_euclidean"],
        })
    training = np.isin(roles, TRAINING_ROLES)
    summary = {"held_out_pieces": int(len(np.unique(pieces[held_out]))), "held_out_snippets": int(held_out.sum()),
               "training_pieces": int(len(np.unique(pieces[training]))), "results": rows}
    history = head_facts.pop("history", None)
    if head_facts:
        summary["metric_head"] = head_facts
    return pd.concat(tables, ignore_index=True), summary, {"distance_samples": distance_samples, "head_history": history}


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflow_scripts.classify import select_layer
    from workflow_scripts.embeddings_table import table_to_embeddings
    from workflow_scripts.io_utils import read_provenance, write_json_atomic, write_parquet_atomic, write_tsv_atomic
    from workflow_scripts.job_log import job_logger
    from workflow_scripts.plots import plot_representation_distances
    from workflow_scripts.provenance import provenance_record

    logger = job_logger("retrieval", snakemake.log[0])
    settings = snakemake.params.settings
    head_settings = HeadSettings.from_config(settings["metric_head"])
    if head_settings.enabled:
        import torch

        torch.set_num_threads(snakemake.threads)
    embedder = read_provenance(snakemake.input.dataset)["embedder"]
    table = pq.read_table(snakemake.input.dataset)
    vectors = select_layer(table_to_embeddings(table, embedder["layers"], embedder["dim"]), settings["layer"])[:, 0, :]
    assignment = pq.read_table(snakemake.input.assignment).to_pandas().set_index("snippet_id")
    snippet_ids = table.column("snippet_id").to_pylist()
    roles = assignment.role.reindex(snippet_ids).fillna("unassigned").to_numpy()
    pieces = np.array(table.column("piece_id").to_pylist())
    per_query, summary, figures = evaluate_retrieval(
        vectors, pieces, roles, settings["bootstrap_resamples"], settings["seed"], head_settings, logger
    )
    per_query["snippet_id"] = np.array(snippet_ids)[roles == "test"][per_query["query"].to_numpy()]
    provenance = provenance_record("retrieval", settings, embedder=embedder, wildcards=dict(snakemake.wildcards))
    write_json_atomic(snakemake.output.metrics, {**summary, "provenance": provenance})
    write_parquet_atomic(pa.Table.from_pandas(per_query, preserve_index=False), snakemake.output.per_query, provenance)
    history = figures["head_history"]
    write_tsv_atomic(history if history is not None else pd.DataFrame(columns=["epoch", "loss", "validation_map"]),
                     snakemake.output.head_curve)
    title = " / ".join(dict(snakemake.wildcards).values())
    plot_representation_distances(figures["distance_samples"], summary["results"], snakemake.output.distances_png, title)
    for row in summary["results"]:
        logger.info("%s: MAP %.4f, MR1 %.2f, AUC %.3f", row["representation"], row["map"], row["mr1"], row["auc_cosine"])
