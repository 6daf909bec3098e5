"""The fast linear probe (full-batch L-BFGS) against the report's Adam recipe, same data.

Reads a dataset and a by_snippet split written by the workflow (defaults: the spectral
embedder, piano variant) and trains both linear probes on the same training snippets:

- report: Adam, lr 1e-3, batch 256, 1000 epochs, no weight decay, no normalisation;
- fast:   L-BFGS, standardised features, weight decay 1e-2, at most 50 iterations
          (config.yaml's linear_lbfgs_std).

Prints training time and test top-1/top-5 of each and the speed-up (target: >= 20x at
equal or better top-1). Timing covers training only, without the per-epoch curve the
workflow logs.

    .venv/bin/python benchmarks/probe_speed.py
    .venv/bin/python benchmarks/probe_speed.py --dataset results/datasets/mert/piano/embeddings.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.plumbing.embeddings_table import table_to_embeddings  # noqa: E402
from workflow_scripts.plumbing.io_utils import read_provenance  # noqa: E402
from workflow_scripts.probes.kinds import neural  # noqa: E402
from workflow_scripts.probes.kinds.neural import NeuralSettings  # noqa: E402
from workflow_scripts.probes.layers import select_layer  # noqa: E402
from workflow_scripts.probes.metrics import top_k_accuracy  # noqa: E402
from workflow_scripts.probes.probe_data import assemble, fit_normalization  # noqa: E402

PROBES = {
    "report Adam recipe": NeuralSettings(optimizer="adam", normalization="none"),
    "fast L-BFGS": NeuralSettings(optimizer="lbfgs", normalization="standardize", weight_decay=1e-2, lbfgs_max_iter=50),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="results/datasets/spectral/piano/embeddings.parquet")
    parser.add_argument("--split", default="results/splits/piano/by_snippet.parquet")
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    embedder = read_provenance(arguments.dataset)["embedder"]
    table = pq.read_table(arguments.dataset)
    vectors = select_layer(table_to_embeddings(table, embedder["layers"], embedder["dim"]), "mean")
    assignment = pq.read_table(arguments.split).to_pandas()
    # Skip the per-epoch train/test evaluation the workflow logs: time the optimisation alone.
    neural._accuracy_pair = lambda model, features, labels: (float("nan"), float("nan"))
    results = {}
    for name, probe in PROBES.items():
        data = assemble(
            table.column("snippet_id").to_pylist(), table.column("piece_id").to_pylist(), vectors, assignment
        )
        normalize = fit_normalization(data.features["train"], probe.normalization)
        data.features = {role: normalize(values) for role, values in data.features.items()}
        started = time.perf_counter()
        scores, _, _, _, _ = neural.train_probe(data, probe)
        seconds = time.perf_counter() - started
        results[name] = (
            seconds,
            top_k_accuracy(data.labels["test"], scores, 1),
            top_k_accuracy(data.labels["test"], scores, 5),
        )
    print(
        f"dataset: {arguments.dataset} ({table.num_rows} snippets, {embedder['name']}, dim {embedder['dim']}); "
        f"{arguments.threads} CPU threads"
    )
    for name, (seconds, top1, top5) in results.items():
        print(f"{name:20s}: {seconds:7.2f} s   top-1 {top1:.4f}   top-5 {top5:.4f}")
    report, fast = results["report Adam recipe"], results["fast L-BFGS"]
    print(
        f"speed-up: {report[0] / fast[0]:.1f}x (target >= 20x); top-1 difference {fast[1] - report[1]:+.4f} (target >= 0)"
    )


if __name__ == "__main__":
    main()
