"""The embed stage's job function against a bare model loop, on real rendered pieces.

Times, in one run and on the same clips:

- stage: ``workflow_scripts.stages.embed.embed_batch``, the function every embed job runs, on a
  folder of pieces as the render stage writes them (``{piece}.flac`` and
  ``{piece}.snippets.parquet``): cache keys, FLAC decoding in reader threads, cross-piece
  exact-length batches, device normalisation and pooling, shards and cache entries
  written. The model is built once beforehand (its load is a fixed cost, timed below);
- bare: ``model(x)`` alone, in the best batching the hardware allows: padded batches of
  ``--bare-batch`` clips (64 on CUDA; 1 on the CPU, which is fastest there), inputs
  already normalised and on the device, weights in ``--bare-precision`` (bf16 on CUDA).

It prints seconds of audio per second for both and their ratio (target: stage >= 0.9 x
bare), then the fixed cost of a GPU job (imports, CUDA start-up, model load, first
forward, timed in a fresh process) and the projected wall time of the embed stage for
10,000 pieces on one GPU; ``--replicate K`` also measures one job over every piece K
times (distinct shards), as a 10,000-piece job would run.

The model is the full MERT-v1-95M architecture (7 convolutions of 512 channels, 12
transformer layers of 768) with random weights, saved the way the published checkpoint
is, unless ``--model-dir`` names a folder with the real files. The audio can be rendered
on a CPU machine and carried to a GPU machine without FluidSynth:

    .venv/bin/snakemake --cores 2 results/audio/piano/batches/batch000.json   # or a full run
    .venv/bin/python benchmarks/embed_throughput.py --audio results/audio/piano --pieces 16 --device cpu
    python benchmarks/embed_throughput.py --audio results/audio/piano --device cuda --precision bf16-true
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from workflow_scripts.embedders import build_embedder
from workflow_scripts.plumbing.snippet_audio import read_snippet_audio
from workflow_scripts.stages.embed import PieceFiles, embed_batch, reader_threads_for

RATE = 24000
CORPUS_PIECES_AT_SCALE = 10_000
# Timed in a fresh process: what a GPU embed job pays before its first useful batch.
FIXED_COST_PROBE = r"""
import json, sys, time
marks = {}
start = time.perf_counter()
import torch
marks["import torch"] = time.perf_counter() - start
t = time.perf_counter()
from transformers import HubertModel, Wav2Vec2FeatureExtractor
marks["import transformers (HubertModel)"] = time.perf_counter() - t
device = torch.device(sys.argv[2])
t = time.perf_counter()
if device.type == "cuda":
    torch.zeros(1, device=device); torch.cuda.synchronize()
marks["CUDA start-up"] = time.perf_counter() - t
sys.path.insert(0, sys.argv[3])
from workflow_scripts.embedders import build_embedder
t = time.perf_counter()
embedder = build_embedder("mert", json.loads(sys.argv[1]))
marks["model load (build_embedder)"] = time.perf_counter() - t
import numpy as np
t = time.perf_counter()
embedder.embed([np.zeros(24000 * 9, np.float32)] * 4); embedder.timing_barrier()
marks["first forward"] = time.perf_counter() - t
print(json.dumps(marks))
"""


def mert_95m_config():
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        conv_dim=(512,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        feat_proj_layer_norm=True,
    )


def save_random_mert(folder: Path) -> None:
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model = HubertModel(mert_95m_config())
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mert_model", feature_extractor_cqt=False, deepnorm=False, attention_relax=-1.0)
    (folder / "config.json").write_text(json.dumps(config))
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, do_normalize=True, return_attention_mask=True
    ).save_pretrained(folder)


def local_mert_settings(model_dir: Path, random_weights: bool, device: str, precision: str, batch_size: int) -> dict:
    """Embedder settings for a model folder, as the workflow's config would give them."""
    return {
        "model_id": "random-MERT-v1-95M-architecture" if random_weights else str(model_dir),
        "revision": "none",
        "local_dir": str(model_dir),
        "cache_dir": None,
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
        "padding": False,
        "chunk_seconds": 30.0,
        "sample_rate": RATE,
    }


def rendered_pieces(folder: Path, limit: int | None) -> list[str]:
    names = sorted(path.name.removesuffix(".snippets.parquet") for path in folder.glob("*.snippets.parquet"))
    names = [name for name in names if (folder / f"{name}.flac").is_file()]
    if not names:
        raise SystemExit(f"{folder} holds no rendered pieces ({{piece}}.flac with {{piece}}.snippets.parquet)")
    return names[:limit] if limit else names


def job_files(audio: Path, names: list[str], out: Path, copies: int = 1) -> list[PieceFiles]:
    return [
        PieceFiles(
            f"{name}~{copy}", audio / f"{name}.snippets.parquet", audio / f"{name}.flac", out / f"{name}~{copy}.parquet"
        )
        for copy in range(copies)
        for name in names
    ]


def all_clips(audio: Path, names: list[str]) -> list[np.ndarray]:
    clips = []
    for name in names:
        clips += read_snippet_audio(audio / f"{name}.flac", pq.read_table(audio / f"{name}.snippets.parquet"))
    return clips


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_model(folder: Path, device: torch.device, precision: str):
    from transformers import HubertModel

    model = HubertModel.from_pretrained(folder).eval().to(device)
    return model.to(torch.bfloat16) if precision == "bf16-true" else model


def time_bare(model, clips: list[np.ndarray], batch: int, device: torch.device) -> float:
    """model(x) over padded batches of ``batch`` clips in length order; inputs prepared beforehand."""
    dtype = next(model.parameters()).dtype
    order = sorted(range(len(clips)), key=lambda index: clips[index].size)
    prepared = []
    for start in range(0, len(order), batch):
        members = [clips[index] for index in order[start : start + batch]]
        values = np.zeros((len(members), max(clip.size for clip in members)), np.float32)
        for row, clip in enumerate(members):
            values[row, : clip.size] = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
        prepared.append(torch.from_numpy(values).to(device, dtype))
    synchronise(device)
    started = time.perf_counter()
    with torch.inference_mode():
        for values in prepared:
            model(values)
    synchronise(device)
    return time.perf_counter() - started


def time_stage(files, settings, embedder, threads: int, scratch: Path, logger):
    """One job's wall time, a fresh cache so every piece is computed, as in a first run."""
    cache = Path(tempfile.mkdtemp(dir=scratch, prefix="cache-"))
    stats = embed_batch(
        files, "mert", settings, cache, logger, embedder=embedder, reader_threads=reader_threads_for(threads)
    )
    return stats


def fixed_costs(settings: dict, device: str) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", FIXED_COST_PROBE, json.dumps(settings), device, str(REPO_ROOT)],
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise SystemExit(f"the fixed-cost probe failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=REPO_ROOT / "results/audio/piano", help="a render folder")
    parser.add_argument("--pieces", type=int, default=None, help="use the first N pieces (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "bf16-true"])
    parser.add_argument(
        "--bare-precision",
        default=None,
        choices=["fp32", "bf16-true"],
        help="default: bf16-true on CUDA, fp32 on the CPU",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="the stage's batch_size setting")
    parser.add_argument("--bare-batch", type=int, default=None, help="default: 64 on CUDA, 1 on the CPU")
    parser.add_argument("--threads", type=int, default=8, help="the job's threads (readers: threads - 1)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of bare then stage; the best of each is reported"
    )
    parser.add_argument("--replicate", type=int, default=0, help="also time one job over every piece K times")
    parser.add_argument(
        "--pieces-per-job", type=int, default=10_000, help="embed.pieces_per_gpu_job, for the projection"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="real model files (default: random weights)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    on_cuda = device.type == "cuda"
    bare_precision = arguments.bare_precision or ("bf16-true" if on_cuda else "fp32")
    bare_batch = arguments.bare_batch or (64 if on_cuda else 1)
    logger = logging.getLogger("chorale_id.benchmark")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False

    names = rendered_pieces(arguments.audio, arguments.pieces)
    clips = all_clips(arguments.audio, names)
    audio_seconds = sum(clip.size for clip in clips) / RATE
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        model_dir = arguments.model_dir or scratch / "model"
        if arguments.model_dir is None:
            save_random_mert(model_dir)
        settings = local_mert_settings(
            model_dir, arguments.model_dir is None, arguments.device, arguments.precision, arguments.batch_size
        )
        costs = fixed_costs(settings, arguments.device)
        embedder = build_embedder("mert", settings)
        model = bare_model(model_dir, device, bare_precision)
        # Warm-up: kernels, allocator, autotuning, for both paths.
        time_bare(model, clips[: min(len(clips), bare_batch * 2)], bare_batch, device)
        time_stage(
            job_files(arguments.audio, names[:2], scratch / "warm"),
            settings,
            embedder,
            arguments.threads,
            scratch,
            logger,
        )
        # Bare and stage in turn, each round, so a machine whose speed drifts (a shared host,
        # GPU clocks) weighs on both alike; the best round of each is reported.
        bare_times, runs = [], []
        for run in range(arguments.repeats):
            bare_times.append(time_bare(model, clips, bare_batch, device))
            files = job_files(arguments.audio, names, scratch / f"run{run}")
            runs.append(time_stage(files, settings, embedder, arguments.threads, scratch, logger))
        bare = min(bare_times)
        best = min(runs, key=lambda stats: stats.wall_seconds)
        replicated = None
        if arguments.replicate:
            files = job_files(arguments.audio, names, scratch / "replicated", copies=arguments.replicate)
            replicated = time_stage(files, settings, embedder, arguments.threads, scratch, logger)

    name = torch.cuda.get_device_name(device) if on_cuda else f"CPU, {torch.get_num_threads()} torch threads"
    stage_rate, bare_rate = audio_seconds / best.wall_seconds, audio_seconds / bare
    print(f"device: {name}; torch {torch.__version__}; stage precision {embedder.precision}, bare {bare_precision}")
    print(
        f"pieces: {len(names)} from {arguments.audio}; snippets: {len(clips)}; {audio_seconds:.1f} s of audio; "
        f"{len({clip.size for clip in clips})} distinct lengths"
    )
    print(f"bare model(x), padded batches of {bare_batch:<3}: {bare_rate:9.1f} s-audio/s ({bare:.2f} s)")
    print(
        f"embed stage (embed_batch), batch_size {arguments.batch_size:<3}: {stage_rate:9.1f} s-audio/s "
        f"({best.wall_seconds:.2f} s: embedding {best.embed_seconds:.2f} s, waiting for audio "
        f"{best.wait_read_seconds:.2f} s, {best.forward_calls} calls)"
    )
    print(
        f"stage / bare: {bare / best.wall_seconds:.3f}  (target >= 0.90); per round, bare "
        + " ".join(f"{value:.2f}" for value in bare_times)
        + " s, stage "
        + " ".join(f"{stats.wall_seconds:.2f}" for stats in runs)
        + " s"
    )
    fixed = sum(costs.values())
    print(
        "fixed cost of a job, fresh process: "
        + ", ".join(f"{key} {value:.2f} s" for key, value in costs.items())
        + f"; total {fixed:.1f} s"
    )
    per_piece = audio_seconds / len(names)
    pieces_per_job = arguments.pieces_per_job
    jobs = math.ceil(CORPUS_PIECES_AT_SCALE / pieces_per_job)
    work = CORPUS_PIECES_AT_SCALE * per_piece / stage_rate
    projected = jobs * fixed + work
    print(
        f"projected embed stage for {CORPUS_PIECES_AT_SCALE:,} pieces ({per_piece:.1f} s of audio each) on one "
        f"device: {jobs} job(s) of up to {pieces_per_job:,} pieces (embed.pieces_per_gpu_job), {projected:.0f} s "
        f"= {jobs} x {fixed:.1f} s fixed + {work:.0f} s of work; fixed share {jobs * fixed / projected:.0%}"
    )
    figures = {
        "device": name,
        "torch": torch.__version__,
        "precision": embedder.precision,
        "bare_precision": bare_precision,
        "pieces": len(names),
        "snippets": len(clips),
        "audio_seconds": audio_seconds,
        "bare_batch": bare_batch,
        "bare_s_audio_per_s": bare_rate,
        "stage_s_audio_per_s": stage_rate,
        "ratio": bare / best.wall_seconds,
        "stage_embed_seconds": best.embed_seconds,
        "stage_wall_seconds": best.wall_seconds,
        "fixed_costs": costs,
        "projected_10k_seconds": projected,
    }
    if replicated is not None:
        rate = replicated.audio_seconds / replicated.wall_seconds
        print(
            f"measured: one job over {replicated.computed:,} pieces ({replicated.audio_seconds:.0f} s of audio): "
            f"{replicated.wall_seconds:.1f} s, {rate:.0f} s-audio/s; with the fixed cost {fixed + replicated.wall_seconds:.0f} s"
        )
        figures["replicated"] = {
            "pieces": replicated.computed,
            "wall_seconds": replicated.wall_seconds,
            "s_audio_per_s": rate,
        }
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
