"""Embed-stage throughput against a bare ``model(x)`` loop, same snippets, same device.

Builds the full MERT-v1-95M architecture (7 convolutions of 512 channels, 12 transformer
layers of width 768) with random weights, saves it the way the published checkpoint is
laid out, then times

- bare: ``model(x)`` under ``torch.inference_mode`` over the same same-length batches,
  with inputs already normalised and on the device (nothing but the forward pass);
- stage: ``MertEmbedder.embed`` from raw numpy clips, as the embed jobs call it
  (normalisation, batching, all 13 hidden states, masked mean pooling, copy back).

Prints seconds of audio per second for both and their ratio (target: stage >= 0.9 x bare).

    .venv/bin/python benchmarks/embed_throughput.py --device cpu --snippets 12
    .venv/bin/python benchmarks/embed_throughput.py --device cuda --precision bf16 --snippets 512
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.embedders.mert import AUTOCAST_DTYPES, MertEmbedder, plan_batches  # noqa: E402

RATE = 24000


def mert_95m_config():
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
        feat_extract_norm="group", do_stable_layer_norm=False, feat_proj_layer_norm=True,
    )


def save_random_mert(folder: Path) -> None:
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model = HubertModel(mert_95m_config())
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mert_model", feature_extractor_cqt=False, deepnorm=False, attention_relax=-1.0)
    (folder / "config.json").write_text(json.dumps(config))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, do_normalize=True, return_attention_mask=True).save_pretrained(folder)


def snippets(count: int, seed: int = 0) -> list[np.ndarray]:
    """Lengths as in the chorale corpus at 100 qpm: mostly 4 bars of 4/4 (9.6 s), some 3/4 and pickups."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([9.6, 9.6, 9.6, 7.2, 7.8], size=count)
    return [(0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32) for seconds in lengths]


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_bare(model, clips, batches, device, precision) -> float:
    prepared = []
    for batch in batches:
        stacked = np.stack([clips[index] for index in batch])
        stacked = (stacked - stacked.mean(axis=1, keepdims=True)) / np.sqrt(stacked.var(axis=1, keepdims=True) + 1e-7)
        prepared.append(torch.from_numpy(stacked).to(device))
    autocast = (torch.autocast("cuda", dtype=getattr(torch, AUTOCAST_DTYPES[precision]))
                if device.type == "cuda" and precision in AUTOCAST_DTYPES else torch.autocast(device.type, enabled=False))
    synchronise(device)
    started = time.perf_counter()
    with torch.inference_mode(), autocast:
        for values in prepared:
            model(values)
    synchronise(device)
    return time.perf_counter() - started


def time_stage(embedder, clips, device) -> float:
    synchronise(device)
    started = time.perf_counter()
    embedder.embed(clips)
    synchronise(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--snippets", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats; the best of each is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)

    clips = snippets(arguments.snippets)
    audio_seconds = sum(clip.size for clip in clips) / RATE
    with tempfile.TemporaryDirectory() as folder:
        save_random_mert(Path(folder))
        settings = {
            "model_id": "random-MERT-v1-95M-architecture", "revision": "none", "local_dir": folder, "cache_dir": None,
            "device": arguments.device, "precision": arguments.precision, "batch_size": arguments.batch_size,
            "padding": False, "chunk_seconds": 30.0, "trust_remote_code": False, "sample_rate": RATE,
        }
        embedder = MertEmbedder(settings)
        device = embedder.device
        batches = plan_batches([clip.size for clip in clips], arguments.batch_size, allow_padding=False)
        # Warm-up: kernels, allocator, autotuning.
        embedder.embed(clips[: min(4, len(clips))])
        bare = min(time_bare(embedder.model, clips, batches, device, embedder.precision) for _ in range(arguments.repeats))
        stage = min(time_stage(embedder, clips, device) for _ in range(arguments.repeats))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; precision: {embedder.precision}; torch {torch.__version__}")
    print(f"snippets: {len(clips)} ({audio_seconds:.1f} s of audio), batches: {len(batches)}")
    print(f"bare model(x) loop : {audio_seconds / bare:8.2f} s-audio/s ({bare:.2f} s)")
    print(f"embed stage path   : {audio_seconds / stage:8.2f} s-audio/s ({stage:.2f} s)")
    print(f"stage / bare       : {bare / stage:8.3f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
