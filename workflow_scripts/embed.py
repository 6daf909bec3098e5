"""Embed stage: a batch of rendered pieces to one embedding shard per piece.

One job loads the embedder once and embeds every piece of its batch, restoring pieces
whose audio and embedder settings are unchanged from the piece cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from workflow_scripts.batch_index import write_batch_index
from workflow_scripts.code_graph import module_digest
from workflow_scripts.embedders import Embedder, build_embedder
from workflow_scripts.embedders.registry import RUNTIME_ONLY_SETTINGS
from workflow_scripts.embeddings_table import embeddings_to_table
from workflow_scripts.io_utils import read_provenance, sha256_file, write_parquet_atomic
from workflow_scripts.job_log import Progress, job_logger
from workflow_scripts.piece_cache import PieceCache
from workflow_scripts.provenance import package_versions, provenance_record
from workflow_scripts.snippet_audio import read_snippet_audio


def embed_piece(embedder: Embedder, manifest_path: Path, audio_path: Path):
    manifest = pq.read_table(manifest_path)
    clips = read_snippet_audio(audio_path, manifest)
    description = embedder.describe()
    if clips:
        vectors = embedder.embed(clips)
    else:
        vectors = np.zeros((0, description["layers"], description["dim"]), np.float32)
    return embeddings_to_table(
        manifest.column("snippet_id").to_pylist(),
        manifest.column("piece_id").to_pylist(),
        manifest.column("snippet_index").to_pylist(),
        vectors,
    )


def embed_batch(
    pieces: list[dict[str, str]],
    embedder_name: str,
    settings: dict[str, Any],
    cache_root: Path,
    logger,
) -> dict[str, int]:
    """Embed each ``{"piece_id", "manifest", "audio", "shard"}``; returns counts."""
    cache = PieceCache(cache_root, f"embed-{embedder_name}")
    counts = {"computed": 0, "restored": 0}
    progress = Progress(len(pieces), "piece")
    embedder: Embedder | None = None
    started_batch = time.perf_counter()
    for number, piece in enumerate(pieces, start=1):
        manifest_path, audio_path = Path(piece["manifest"]), Path(piece["audio"])
        shard = Path(piece["shard"])
        key = cache.key(
            {
                "piece_id": piece["piece_id"],
                "manifest_sha256": sha256_file(manifest_path),
                "audio_sha256": sha256_file(audio_path),
                "embedder": embedder_name,
                "settings": {key: value for key, value in settings.items() if key not in RUNTIME_ONLY_SETTINGS},
                "code": module_digest(__name__),
            }
        )
        if cache.restore(key, {"parquet": shard}):
            counts["restored"] += 1
            logger.info("%s %s: unchanged, restored from cache", progress(number), piece["piece_id"])
            continue
        if embedder is None:
            loaded = time.perf_counter()
            embedder = build_embedder(embedder_name, settings, logger=logger)
            logger.info("embedder %s ready in %.1f s: %s", embedder_name, time.perf_counter() - loaded, embedder.describe())
        started = time.perf_counter()
        render = read_provenance(manifest_path)
        table = embed_piece(embedder, manifest_path, audio_path)
        provenance = provenance_record(
            "embed",
            settings,
            piece_id=piece["piece_id"],
            embedder=embedder.describe(),
            status=render["status"],
            reason=render["reason"],
            render={
                "settings": render["settings"],
                "settings_digest": render["settings_digest"],
                "soundfont": render["soundfont"],
                "source_sha256": render["source_sha256"],
            },
            libraries=package_versions("numpy", "torch", "transformers"),
        )
        write_parquet_atomic(table, shard, provenance)
        cache.store(key, {"parquet": shard})
        counts["computed"] += 1
        logger.info(
            "%s %s: %d snippets embedded in %.2f s",
            progress(number), piece["piece_id"], table.num_rows, time.perf_counter() - started,
        )
    logger.info("batch of %d pieces in %.1f s: %s", len(pieces), time.perf_counter() - started_batch, counts)
    return counts


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    logger = job_logger("embed", snakemake.log[0])
    pieces = [
        {"piece_id": piece_id, "manifest": manifest, "audio": audio, "shard": shard}
        for piece_id, manifest, audio, shard in zip(
            snakemake.params.pieces, snakemake.params.manifests, snakemake.params.audio, snakemake.output.shards
        )
    ]
    embed_batch(pieces, snakemake.params.embedder, snakemake.params.settings, Path(snakemake.params.cache), logger)
    write_batch_index(snakemake.output.index, "embed", [{"piece_id": piece["piece_id"], "shard": piece["shard"]} for piece in pieces])

