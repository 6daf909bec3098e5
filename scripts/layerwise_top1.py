"""Top-1 per layer of layered embedders: the fast probe trained on each layer alone.

Reads a finished run's datasets and by_snippet assignments (a variant's, or a transfer's
such as piano_to_organ), trains the probe named in the run's config on every layer in turn
(probe settings as in config.yaml's linear_lbfgs_std unless --normalization says otherwise),
and prints a Markdown table and writes a figure (top-1 per layer, one line per embedder and
setting). Layers of a pre-norm transformer (MERT-v1-330M: states 0..23 un-normalised, the
last layer-normed) differ in scale; --normalization standardize removes that, none and l2
compare them as they are.

    .venv/bin/python scripts/layerwise_top1.py --run /tmp/run13 --embedders basic_pitch pianoroll \
        --settings piano piano_to_organ --figure layerwise.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def layer_names(embedder: dict) -> list[str]:
    names = embedder.get("settings", {}).get("layer_names")
    return list(names) if names else [str(index) for index in range(embedder["layers"])]


def layerwise(run: Path, embedder_name: str, setting: str, normalization: str) -> list[tuple[str, float, list[float]]]:
    import pyarrow.parquet as pq

    from workflow_scripts.plumbing.io_utils import read_provenance
    from workflow_scripts.probes.kinds import settings_from_config
    from workflow_scripts.stages.classify import run_probe

    dataset = run / f"results/datasets/{embedder_name}/{setting}/embeddings.parquet"
    assignment = run / f"results/splits/{setting}/by_snippet.parquet"
    for path in (dataset, assignment):
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: run the workflow with {embedder_name} and {setting} first")
    embedder = read_provenance(dataset)["embedder"]
    table, split = pq.read_table(dataset), pq.read_table(assignment).to_pandas()
    rows = []
    for index, name in enumerate(layer_names(embedder)):
        probe = settings_from_config(
            {
                "optimizer": "lbfgs",
                "normalization": normalization,
                "weight_decay": 0.01,
                "lbfgs_max_iter": 50,
                "layer": index,
            }
        )
        metrics = run_probe(table, embedder, split, probe)["metrics"]
        rows.append((name, metrics["top1"], metrics["top1_ci95"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO_ROOT, help="the run's folder (holding results/)")
    parser.add_argument("--embedders", nargs="+", default=["basic_pitch", "pianoroll"])
    parser.add_argument("--settings", nargs="+", default=["piano"], help="variants or transfers (e.g. piano_to_organ)")
    parser.add_argument("--normalization", default="standardize", choices=["none", "standardize", "l2"])
    parser.add_argument("--figure", type=Path, help="write the figure here (PNG)")
    arguments = parser.parse_args()

    results = {}
    print(f"| embedder | setting | layer | top-1 [95% CI] ({arguments.normalization}) |\n| --- | --- | --- | --- |")
    for embedder in arguments.embedders:
        for setting in arguments.settings:
            rows = layerwise(arguments.run, embedder, setting, arguments.normalization)
            results[(embedder, setting)] = rows
            for name, top1, interval in rows:
                print(
                    f"| {embedder} | {setting} | {name} | {100 * top1:.1f}% [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}] |"
                )
    if arguments.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3.5))
        for (embedder, setting), rows in results.items():
            axis.plot(
                [name for name, _, _ in rows],
                [100 * top1 for _, top1, _ in rows],
                marker="o",
                label=f"{embedder}, {setting}",
            )
        axis.set_ylabel("by_snippet top-1 (%)")
        axis.set_xlabel("layer")
        axis.set_title(f"Fast linear probe per layer ({arguments.normalization})")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(arguments.figure, dpi=120)
        print(f"figure: {arguments.figure}")


if __name__ == "__main__":
    main()
