"""The workflow's fast linear probe against scikit-learn's LogisticRegression, same features and split.

For each embedder's dataset and the by_snippet split written by a workflow run (default:
the default run's results/), this runs

- ``fast``: the probe config.yaml names ``linear_lbfgs_std`` (kind logistic: L2 chosen on five
  held-out folds of train + validation, refit on both), through the classify stage's ``run_probe``;
- ``sklearn``: ``LogisticRegression(C=1.0, class_weight="balanced", max_iter=300)`` on the same
  standardised mean-layer features, fitted on train + validation (what issue 21 measured);
- ``knn``: the knn kind with its defaults, also through ``run_probe``;

and prints test top-1 with the 95% interval over pieces and the fit time of each. Both
torch fits run on one thread (the kinds pin it); scikit-learn's lbfgs uses what BLAS gives it.

    .venv/bin/python benchmarks/linear_probe_vs_sklearn.py
    .venv/bin/python benchmarks/linear_probe_vs_sklearn.py --run runs/other --embedders spectral
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.plumbing.embeddings_table import table_to_embeddings  # noqa: E402
from workflow_scripts.plumbing.io_utils import read_provenance  # noqa: E402
from workflow_scripts.probes.kinds import settings_from_config  # noqa: E402
from workflow_scripts.probes.layers import select_layer  # noqa: E402
from workflow_scripts.probes.metrics import bootstrap_ci, top_k_correct  # noqa: E402
from workflow_scripts.probes.probe_data import assemble, fit_normalization, train_and_validation  # noqa: E402
from workflow_scripts.stages.classify import run_probe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def sklearn_row(table, embedder, assignment) -> tuple[float, list[float], float]:
    from sklearn.linear_model import LogisticRegression

    vectors = select_layer(table_to_embeddings(table, embedder["layers"], embedder["dim"]), "mean")
    data = assemble(table.column("snippet_id").to_pylist(), table.column("piece_id").to_pylist(), vectors, assignment)
    normalize = fit_normalization(data.features["train"], "standardize")
    data.features = {role: normalize(values) for role, values in data.features.items()}
    features, labels = train_and_validation(data)
    started = time.perf_counter()
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=300).fit(features, labels)
    seconds = time.perf_counter() - started
    scores = np.full((len(data.labels["test"]), len(data.class_names)), -np.inf)
    scores[:, model.classes_] = model.decision_function(data.flat("test"))
    correct = top_k_correct(data.labels["test"], scores, 1)
    return float(correct.mean()), bootstrap_ci(correct, 1000, 0, clusters=data.labels["test"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=REPO, help="the folder a workflow run wrote results/ in")
    parser.add_argument("--variant", default="piano")
    parser.add_argument("--embedders", nargs="+", default=["spectral", "basic_pitch", "pianoroll"])
    arguments = parser.parse_args()
    fast = settings_from_config(yaml.safe_load((REPO / "config.yaml").read_text())["probes"]["linear_lbfgs_std"])
    knn = settings_from_config({"kind": "knn"})
    assignment = pq.read_table(arguments.run / f"results/splits/{arguments.variant}/by_snippet.parquet").to_pandas()
    print(
        "| embedder | fast probe top-1 [95% CI] | chosen | fit s | sklearn top-1 [95% CI] | fit s | knn top-1 [95% CI] | k |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in arguments.embedders:
        path = arguments.run / f"results/datasets/{name}/{arguments.variant}/embeddings.parquet"
        table, embedder = pq.read_table(path), read_provenance(path)["embedder"]
        ours = run_probe(table, embedder, assignment, fast)["metrics"]
        neighbours = run_probe(table, embedder, assignment, knn)["metrics"]
        top1, interval, seconds = sklearn_row(table, embedder, assignment)

        def cell(value, bounds):
            return f"{100 * value:.1f} [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"

        print(
            f"| {name} | {cell(ours['top1'], ours['top1_ci95'])} | l2 {ours['selected']['l2']:g} | "
            f"{ours['train_seconds']:.1f} | {cell(top1, interval)} | {seconds:.1f} | "
            f"{cell(neighbours['top1'], neighbours['top1_ci95'])} | {neighbours['selected']['k']} |"
        )


if __name__ == "__main__":
    main()
