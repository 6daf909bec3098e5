"""How far bf16 pooled vectors are from fp32 ones, per layer, on real rendered pieces.

Runs the embed stage's job function (``embed_batch``) over the same pieces at ``fp32`` and
at each lower precision, then compares the stored shards snippet by snippet: cosine
similarity per layer (mean and minimum) and the relative L2 error. The model is the full
MERT-v1-95M architecture with random weights unless ``--model-dir`` names the real files
(random weights show the arithmetic's drift, not how it moves a probe: for that, run the
workflow with ``precision: fp32`` and ``bf16-true`` and compare ``results/summary.tsv``).

    .venv/bin/python benchmarks/precision_drift.py --audio results/audio/piano --pieces 4 --device cpu
    python benchmarks/precision_drift.py --audio .device/audio --device cuda --precisions bf16 bf16-true
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from embed_throughput import job_files, local_mert_settings, rendered_pieces, save_random_mert

from workflow_scripts.plumbing.embeddings_table import table_to_embeddings
from workflow_scripts.plumbing.io_utils import read_provenance
from workflow_scripts.stages.embed import embed_batch


def stored_vectors(shards: list[Path]) -> np.ndarray:
    """(snippets, layers, dim) of every shard, in order."""
    blocks = []
    for shard in shards:
        embedder = read_provenance(shard)["embedder"]
        blocks.append(table_to_embeddings(pq.read_table(shard), embedder["layers"], embedder["dim"]))
    return np.concatenate(blocks).astype(np.float64)


def layer_drift(reference: np.ndarray, other: np.ndarray) -> list[dict[str, float]]:
    """Per layer: mean and minimum cosine over snippets, and ||other - reference|| / ||reference||."""
    dot = (reference * other).sum(-1)
    cosine = dot / (np.linalg.norm(reference, axis=-1) * np.linalg.norm(other, axis=-1))
    relative = np.linalg.norm(other - reference, axis=-1) / np.linalg.norm(reference, axis=-1)
    return [
        {
            "layer": layer,
            "cosine_mean": float(cosine[:, layer].mean()),
            "cosine_min": float(cosine[:, layer].min()),
            "relative_l2_mean": float(relative[:, layer].mean()),
        }
        for layer in range(reference.shape[1])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=REPO_ROOT / "results/audio/piano")
    parser.add_argument("--pieces", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["bf16-true"], choices=["bf16", "fp16", "bf16-true"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    logger = logging.getLogger("chorale_id.benchmark")
    logger.propagate = False

    names = rendered_pieces(arguments.audio, arguments.pieces)
    results = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        model_dir = arguments.model_dir or scratch / "model"
        if arguments.model_dir is None:
            save_random_mert(model_dir)
        vectors = {}
        for precision in ["fp32", *arguments.precisions]:
            settings = local_mert_settings(
                model_dir, arguments.model_dir is None, arguments.device, precision, arguments.batch_size
            )
            files = job_files(arguments.audio, names, scratch / precision)
            embed_batch(files, "mert", settings, scratch / f"cache-{precision}", logger)
            vectors[precision] = stored_vectors([piece.shard for piece in files])
        for precision in arguments.precisions:
            results[precision] = layer_drift(vectors["fp32"], vectors[precision])

    snippets = len(vectors["fp32"])
    print(f"{len(names)} pieces, {snippets} snippets, device {arguments.device}; against fp32, per layer:")
    for precision, layers in results.items():
        print(f"  {precision}: cosine mean " + " ".join(f"{row['cosine_mean']:.5f}" for row in layers))
        print(f"  {precision}: cosine min  " + " ".join(f"{row['cosine_min']:.5f}" for row in layers))
        print(f"  {precision}: rel. L2     " + " ".join(f"{row['relative_l2_mean']:.4f}" for row in layers))
    if arguments.json:
        arguments.json.write_text(json.dumps({"pieces": len(names), "snippets": snippets, "drift": results}, indent=2))


if __name__ == "__main__":
    main()
