"""Embed stage: the rendered pieces of one job to one embedding shard per piece.

A job loads the embedder once and embeds the snippets of all its pieces together:

1. pieces whose audio, manifest, embedder settings and code are unchanged are restored
   from the piece cache; only the rest are computed;
2. reader threads decode the next pieces' FLAC while the model runs;
3. snippets from every piece are bucketed by the embedder's ``batch_key`` (the exact
   length for MERT, whose group-normalised first convolution padding would change) and
   each bucket goes to the model as soon as it holds ``batch_size`` clips, so a forward
   pass sees full batches rather than one piece's three to six snippets;
4. the pooled vectors (and, for an embedder that keeps one, each snippet's time summary:
   window means at ``embed.summary_hz``, workflow_scripts/pooling) are scattered back to
   their pieces, and a writer thread stores each piece's shard (and its cache entry) as
   soon as its last snippet is done.

A batch that does not fit in the device's memory is split in half and retried, and the
rest of the job keeps the smaller size; the job log reports the model's load time, the
time spent embedding and the seconds of audio per second.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.embedders import Embedder, build_embedder
from workflow_scripts.embedders.registry import RUNTIME_ONLY_SETTINGS, declaration, stage_code_digest
from workflow_scripts.embedders.time_summary import TimeSummary
from workflow_scripts.plumbing.batch_index import write_batch_index
from workflow_scripts.plumbing.embeddings_table import embeddings_to_table
from workflow_scripts.plumbing.io_utils import read_provenance, sha256_file, write_parquet_atomic
from workflow_scripts.plumbing.job_log import Progress, job_logger
from workflow_scripts.plumbing.piece_cache import PieceCache
from workflow_scripts.plumbing.provenance import package_versions, provenance_record
from workflow_scripts.plumbing.snippet_audio import read_snippet_audio

# Pieces decoded ahead of the model per reader thread: enough to keep buckets filling
# while the model runs, few enough that a job of thousands of pieces stays small in memory.
PIECES_AHEAD_PER_READER = 4
# embed.summary_hz's default (config.schema.yaml), for callers outside the workflow (benchmarks, tests).
DEFAULT_SUMMARY_HZ = 2.0


@dataclass(frozen=True)
class PieceFiles:
    """One piece of the job: its rendered audio and manifest, and the shard to write."""

    piece_id: str
    manifest: Path
    audio: Path
    shard: Path


@dataclass
class LoadedPiece:
    files: PieceFiles
    cache_key: str
    manifest: pa.Table
    clips: list[np.ndarray]
    render: dict[str, Any]
    vectors: np.ndarray | None = None
    summaries: list[TimeSummary | None] | None = None
    remaining: int = 0

    @property
    def audio_samples(self) -> int:
        # From the manifest: an embedder's clips need not be audio (pianoroll reads notes).
        return sum(self.manifest.column("num_samples").to_pylist())


@dataclass
class JobStats:
    """What the job did and where its time went (seconds), for its log and the benchmark."""

    computed: int = 0
    restored: int = 0
    snippets: int = 0
    audio_seconds: float = 0.0
    load_seconds: float = 0.0
    embed_seconds: float = 0.0
    wait_read_seconds: float = 0.0
    wall_seconds: float = 0.0
    forward_calls: int = 0
    out_of_memory_splits: int = 0

    def counts(self) -> dict[str, int]:
        return {"computed": self.computed, "restored": self.restored}


def embed_cache_key(files: PieceFiles, embedder_name: str, settings: dict[str, Any], summary_hz: float) -> str:
    return PieceCache.key(
        {
            "piece_id": files.piece_id,
            "manifest_sha256": sha256_file(files.manifest),
            "audio_sha256": sha256_file(files.audio),
            "embedder": embedder_name,
            "settings": {key: value for key, value in settings.items() if key not in RUNTIME_ONLY_SETTINGS},
            "summary_hz": summary_hz,
            "code": stage_code_digest("embed", embedder_name),
        }
    )


def read_piece(files: PieceFiles, cache_key: str, read_clips: Callable = read_snippet_audio) -> LoadedPiece:
    """Decode one rendered piece (run in a reader thread; libsndfile releases the GIL)."""
    try:
        manifest = pq.read_table(files.manifest)
        clips = read_clips(files.audio, manifest)
        render = read_provenance(files.manifest, manifest.schema)
    except Exception as error:
        raise RuntimeError(
            f"piece {files.piece_id}: cannot read its rendered audio ({files.audio}) or manifest ({files.manifest}): "
            f"{type(error).__name__}: {error}. Delete both and rerun the render stage for this piece."
        ) from error
    return LoadedPiece(files, cache_key, manifest, clips, render, remaining=len(clips))


def prefetched(pool: ThreadPoolExecutor, work: Callable, items: Iterable, ahead: int) -> Iterator:
    """``work(*item)`` for each item, run ``ahead`` items in advance on ``pool``, yielded in order."""
    queued: deque[Future] = deque()
    for item in items:
        queued.append(pool.submit(work, *item))
        if len(queued) > ahead:
            yield queued.popleft().result()
    while queued:
        yield queued.popleft().result()


@dataclass
class ClipBatcher:
    """Buckets clips from many pieces by batch key and hands out full buckets.

    Each clip travels with its owner (piece, snippet index), so vectors can be scattered
    back; a bucket is emitted as soon as it holds ``batch_size`` clips, the rest at ``flush``.
    """

    batch_size: int
    batch_key: Callable[[int], Hashable]
    buckets: dict[Hashable, list[tuple[Any, np.ndarray]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, owner: Any, clip: np.ndarray) -> list[list[tuple[Any, np.ndarray]]]:
        key = self.batch_key(clip.size)
        bucket = self.buckets[key]
        bucket.append((owner, clip))
        if len(bucket) < self.batch_size:
            return []
        del self.buckets[key]
        return [bucket]

    def flush(self) -> list[list[tuple[Any, np.ndarray]]]:
        """Every partly filled bucket, in order of batch key (deterministic across runs)."""
        remaining = [self.buckets[key] for key in sorted(self.buckets, key=repr)]
        self.buckets.clear()
        return remaining


class SplittingRunner:
    """Calls the embedder, with time summaries when ``summary_hz`` is set; a batch that runs
    out of memory is split in half and retried.

    After a split, later batches are cut to the size that fitted, so one oversized batch
    does not cost an out-of-memory error on every bucket of the job. Returns the vectors and
    each clip's summary (None for every clip without ``summary_hz``).
    """

    def __init__(self, embedder: Embedder, logger, stats: JobStats, summary_hz: float | None = None):
        self.embedder = embedder
        self.logger = logger
        self.stats = stats
        self.summary_hz = summary_hz
        self.largest_that_fits: int | None = None

    def __call__(self, clips: list[np.ndarray]) -> tuple[np.ndarray, list[TimeSummary | None]]:
        limit = self.largest_that_fits or len(clips)
        if len(clips) > limit:
            parts = [self(clips[start : start + limit]) for start in range(0, len(clips), limit)]
            return np.concatenate([vectors for vectors, _ in parts]), [s for _, summaries in parts for s in summaries]
        try:
            if self.summary_hz is None:
                vectors, summaries = self.embedder.embed(clips), [None] * len(clips)
            else:
                vectors, summaries = self.embedder.embed_with_summaries(clips, self.summary_hz)
        except Exception as error:
            if not self.embedder.is_out_of_memory(error) or len(clips) == 1:
                raise
            self.embedder.release_memory()
            half = (len(clips) + 1) // 2
            self.largest_that_fits = half
            self.stats.out_of_memory_splits += 1
            self.logger.warning(
                "a batch of %d clips did not fit in memory (%s: %s); retrying it as batches of at most %d",
                len(clips),
                type(error).__name__,
                str(error).splitlines()[0][:200],
                half,
            )
            return self(clips)
        self.stats.forward_calls += 1
        return vectors, summaries


def write_shard(
    piece: LoadedPiece,
    embedder_description: dict[str, Any],
    settings: dict[str, Any],
    libraries: dict[str, str | None],
    cache: PieceCache,
) -> None:
    """The piece's shard, with its provenance, then its cache entry (run in the writer thread)."""
    vectors = piece.vectors
    if vectors is None:  # an excluded piece: no snippets
        vectors = np.zeros((0, embedder_description["layers"], embedder_description["dim"]), np.float32)
    kept = "summary" in embedder_description
    table = embeddings_to_table(
        piece.manifest.column("snippet_id").to_pylist(),
        piece.manifest.column("piece_id").to_pylist(),
        piece.manifest.column("snippet_index").to_pylist(),
        vectors,
        summaries=(piece.summaries or []) if kept else None,
    )
    render = piece.render
    provenance = provenance_record(
        "embed",
        settings,
        piece_id=piece.files.piece_id,
        embedder=embedder_description,
        status=render["status"],
        reason=render["reason"],
        render={
            "settings": render["settings"],
            "settings_digest": render["settings_digest"],
            "soundfont": render["soundfont"],
            "source_sha256": render["source_sha256"],
        },
        libraries=libraries,
    )
    write_parquet_atomic(table, piece.files.shard, provenance)
    cache.store(piece.cache_key, {"parquet": piece.files.shard})


def restore_unchanged(
    pieces: list[PieceFiles],
    cache: PieceCache,
    embedder_name: str,
    settings: dict[str, Any],
    summary_hz: float,
    logger,
    stats: JobStats,
) -> list[tuple[PieceFiles, str]]:
    """Restore the cached pieces; returns the others with their cache keys."""
    pending = []
    for files in pieces:
        key = embed_cache_key(files, embedder_name, settings, summary_hz)
        if cache.restore(key, {"parquet": files.shard}):
            stats.restored += 1
            logger.info("%s: unchanged, restored from cache", files.piece_id)
        else:
            pending.append((files, key))
    return pending


def embed_batch(
    pieces: list[PieceFiles],
    embedder_name: str,
    settings: dict[str, Any],
    cache_root: Path,
    logger,
    embedder: Embedder | None = None,
    reader_threads: int = 2,
    summary_hz: float = DEFAULT_SUMMARY_HZ,
) -> JobStats:
    """Embed every piece of a job into its shard; ``embedder`` may be passed in already built."""
    started = time.perf_counter()
    stats = JobStats()
    cache = PieceCache(cache_root, f"embed-{embedder_name}")
    pending = restore_unchanged(pieces, cache, embedder_name, settings, summary_hz, logger, stats)
    if pending:
        if embedder is None:
            loading = time.perf_counter()
            embedder = build_embedder(embedder_name, settings, logger=logger)
            stats.load_seconds = time.perf_counter() - loading
            logger.info("embedder %s ready in %.1f s: %s", embedder_name, stats.load_seconds, embedder.describe())
        embed_pending(pending, embedder_name, embedder, settings, cache, logger, stats, reader_threads, summary_hz)
    stats.wall_seconds = time.perf_counter() - started
    log_job_summary(logger, len(pieces), stats)
    return stats


def embed_pending(
    pending: list[tuple[PieceFiles, str]],
    embedder_name: str,
    embedder: Embedder,
    settings: dict[str, Any],
    cache: PieceCache,
    logger,
    stats: JobStats,
    reader_threads: int,
    summary_hz: float = DEFAULT_SUMMARY_HZ,
) -> None:
    description = embedder.describe()
    layout = embedder.summary_layout()
    if layout is not None:
        description["summary"] = {**layout, "hz": summary_hz}
    libraries = package_versions(*declaration(embedder_name).packages)
    run = SplittingRunner(embedder, logger, stats, summary_hz if layout is not None else None)
    batcher = ClipBatcher(embedder.batch_size, embedder.batch_key)
    progress = Progress(len(pending), "piece")
    writes: list[Future] = []

    with ThreadPoolExecutor(reader_threads, "embed-read") as readers, ThreadPoolExecutor(1, "embed-write") as writer:

        def store(piece: LoadedPiece) -> None:
            # Logged once the shard and its cache entry exist: a job killed after this line
            # restores the piece on its rerun.
            write_shard(piece, description, settings, libraries, cache)
            stats.computed += 1
            logger.info("%s %s: %d snippets embedded", progress(stats.computed), piece.files.piece_id, len(piece.clips))

        def finish(piece: LoadedPiece) -> None:
            writes.append(writer.submit(store, piece))

        def run_bucket(bucket: list[tuple[Any, np.ndarray]]) -> None:
            embedding = time.perf_counter()
            vectors, summaries = run([clip for _, clip in bucket])
            embedder.timing_barrier()
            stats.embed_seconds += time.perf_counter() - embedding
            for ((piece, snippet), _), vector, summary in zip(bucket, vectors, summaries):
                if piece.vectors is None:
                    piece.vectors = np.empty((len(piece.clips), *vector.shape), np.float32)
                    piece.summaries = [None] * len(piece.clips)
                piece.vectors[snippet] = vector
                piece.summaries[snippet] = summary
                piece.remaining -= 1
                if piece.remaining == 0:
                    piece.clips = [np.empty(0, np.float32)] * len(piece.clips)  # free the audio early
                    finish(piece)

        waiting = time.perf_counter()
        read = functools.partial(read_piece, read_clips=embedder.read_clips)
        for piece in prefetched(readers, read, pending, ahead=PIECES_AHEAD_PER_READER * reader_threads):
            stats.wait_read_seconds += time.perf_counter() - waiting
            stats.snippets += len(piece.clips)
            stats.audio_seconds += piece.audio_samples / embedder.sample_rate
            if not piece.clips:
                finish(piece)
            for snippet, clip in enumerate(piece.clips):
                for bucket in batcher.add((piece, snippet), clip):
                    run_bucket(bucket)
            waiting = time.perf_counter()
        for bucket in batcher.flush():
            run_bucket(bucket)
        for write in writes:
            write.result()  # a failed write fails the job, naming its error


def log_job_summary(logger, piece_count: int, stats: JobStats) -> None:
    rate = stats.audio_seconds / stats.embed_seconds if stats.embed_seconds else float("nan")
    overall = stats.audio_seconds / stats.wall_seconds if stats.wall_seconds else float("nan")
    logger.info(
        "job of %d pieces in %.1f s: %s; %d snippets (%.0f s of audio) in %d forward calls; "
        "embedder load %.1f s, embedding %.1f s (%.0f s-audio/s), waiting for audio %.1f s, "
        "whole job %.0f s-audio/s; out-of-memory splits: %d",
        piece_count,
        stats.wall_seconds,
        stats.counts(),
        stats.snippets,
        stats.audio_seconds,
        stats.forward_calls,
        stats.load_seconds,
        stats.embed_seconds,
        rate,
        stats.wait_read_seconds,
        overall,
        stats.out_of_memory_splits,
    )


def reader_threads_for(job_threads: int) -> int:
    """Threads that decode audio: all but the one driving the model, at least one."""
    return max(1, job_threads - 1)


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    logger = job_logger("embed", snakemake.log[0])
    pieces = [
        PieceFiles(piece_id, Path(manifest), Path(audio), Path(shard))
        for piece_id, manifest, audio, shard in zip(
            snakemake.params.pieces, snakemake.params.manifests, snakemake.params.audio, snakemake.output.shards
        )
    ]
    embed_batch(
        pieces,
        snakemake.params.embedder,
        snakemake.params.settings,
        Path(snakemake.params.cache),
        logger,
        reader_threads=reader_threads_for(snakemake.threads),
        summary_hz=float(snakemake.params.summary_hz),
    )
    write_batch_index(
        snakemake.output.index, "embed", [{"piece_id": p.piece_id, "shard": str(p.shard)} for p in pieces]
    )
