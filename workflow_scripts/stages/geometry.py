"""The geometry stage: per-layer figures of how snippets of one piece lie together
(probes/geometry.py), a sample of snippets for large corpora, and a t-SNE map."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workflow_scripts.probes.geometry import layer_geometry
from workflow_scripts.probes.preconditions import NOT_RUN, RAN, refusal


def sample_rows(count: int, maximum: int, seed: int) -> np.ndarray:
    if count <= maximum:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=maximum, replace=False))


def geometry_table(vectors: np.ndarray, pieces: np.ndarray) -> tuple[pd.DataFrame, dict[int, dict]]:
    """Per-layer figures for (n, layers, dim) vectors, plus the layer-mean, and distance samples."""
    rows, samples = [], {}
    layers = vectors.shape[1]
    candidates = [("mean", vectors.mean(axis=1))] if layers > 1 else []
    candidates += [(str(layer), vectors[:, layer, :]) for layer in range(layers)]
    for name, layer_vectors in candidates:
        figures, layer_samples = layer_geometry(layer_vectors, pieces)
        rows.append({"layer": name, **figures})
        samples[name] = layer_samples
    return pd.DataFrame(rows), samples


def tsne_map(vectors: np.ndarray, pieces: np.ndarray, piece_count: int, seed: int) -> pd.DataFrame:
    """2-D t-SNE of every snippet of the ``piece_count`` pieces with the most snippets."""
    from sklearn.manifold import TSNE

    counts = pd.Series(pieces).value_counts(sort=False)
    chosen = sorted(counts.sort_values(ascending=False, kind="stable").index[:piece_count])
    mask = np.isin(pieces, chosen)
    points = vectors[mask]
    standardized = (points - points.mean(axis=0)) / np.maximum(points.std(axis=0), 1e-12)
    perplexity = float(max(2, min(30, (len(points) - 1) // 3)))
    coordinates = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(standardized)
    return pd.DataFrame({"piece_id": pieces[mask], "x": coordinates[:, 0], "y": coordinates[:, 1]})


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.embeddings_table import table_to_embeddings
    from workflow_scripts.plumbing.io_utils import read_provenance, write_json_atomic, write_tsv_atomic
    from workflow_scripts.plumbing.provenance import provenance_record
    from workflow_scripts.probes.plots import plot_distance_histograms, plot_layer_curve, plot_tsne

    settings = snakemake.params.settings
    embedder = read_provenance(snakemake.input.dataset)["embedder"]
    provenance = provenance_record("geometry", settings, embedder=embedder, wildcards=dict(snakemake.wildcards))
    title = f"{snakemake.wildcards.embedder} / {snakemake.wildcards.variant}"
    record = json.loads(Path(snakemake.input.preconditions).read_text(encoding="utf-8"))
    reason = refusal(record, "geometry", ["geometry"])
    if reason:
        # The preconditions job has said why; this one records it where the figures would be.
        from workflow_scripts.probes.plots import plot_not_run

        write_json_atomic(snakemake.output.summary, {"status": NOT_RUN, "reason": reason, "provenance": provenance})
        write_tsv_atomic(pd.DataFrame(columns=["layer"]), snakemake.output.per_layer)
        for figure in (snakemake.output.distances_png, snakemake.output.layers_png, snakemake.output.tsne_png):
            plot_not_run(figure, title, reason)
        return
    table = pq.read_table(snakemake.input.dataset)
    rows = sample_rows(table.num_rows, settings["max_snippets"], settings["seed"])
    vectors = table_to_embeddings(table, embedder["layers"], embedder["dim"])[rows]
    pieces = np.array(table.column("piece_id").to_pylist())[rows]
    per_layer, samples = geometry_table(vectors, pieces)
    headline_layer = "mean" if "mean" in samples else "0"
    plot_distance_histograms(
        samples[headline_layer], snakemake.output.distances_png, f"{title}, layer {headline_layer}"
    )
    plot_layer_curve(per_layer, snakemake.output.layers_png, title)
    mean_vectors = vectors.mean(axis=1)
    plot_tsne(
        tsne_map(mean_vectors, pieces, settings["tsne_pieces"], settings["seed"]), snakemake.output.tsne_png, title
    )
    write_tsv_atomic(per_layer, snakemake.output.per_layer)
    headline = per_layer.set_index("layer").loc[headline_layer].to_dict()
    write_json_atomic(
        snakemake.output.summary,
        {"status": RAN, "layer": headline_layer, **headline, "snippets": int(len(rows)), "provenance": provenance},
    )
