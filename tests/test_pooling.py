"""Pooling as its own step: time summaries kept by the embed stage, and the poolings made from them."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
from render_fixture import PIANO, render_jobs
from test_dataset import EMBEDDER, write_shard

from workflow_scripts.embedders.posteriorgram import KEYS
from workflow_scripts.embedders.time_summary import summarise_frames
from workflow_scripts.music.synth import resolve_soundfont
from workflow_scripts.plumbing.embeddings_table import embeddings_to_table
from workflow_scripts.plumbing.io_utils import read_provenance, write_parquet_atomic
from workflow_scripts.pooling import PoolingError, check_pooling, pooled_embeddings, pooling_names, poolings
from workflow_scripts.stages.dataset import DatasetError, gather_shards
from workflow_scripts.stages.embed import PieceFiles, embed_batch
from workflow_scripts.stages.render import render_batch


def frames_of(count, layers=2, dim=3, seed=0):
    return np.random.default_rng(seed).normal(size=(layers, count, dim))


def test_a_summary_holds_window_means_and_counts_that_give_back_the_frame_mean():
    frames = frames_of(101)  # 101 frames at 50 Hz: windows of 25 at 2 Hz, the last holding one
    summary = summarise_frames(frames, frame_rate=50, summary_hz=2)
    assert list(summary.frames) == [25, 25, 25, 25, 1]
    np.testing.assert_allclose(summary.means[:, 1], frames[:, 25:50].mean(axis=1), atol=2e-3)  # float16
    pooled = poolings()["mean"].pool(summary.means, summary.frames)
    np.testing.assert_allclose(pooled, frames.mean(axis=1), atol=2e-3)


def test_the_registry_finds_every_pooling_module_and_refuses_unknown_names():
    assert {"native", "mean", "mean_std", "sequence"} <= set(pooling_names())
    for pooling in poolings().values():
        summary = summarise_frames(frames_of(60), 10, 2)
        assert pooling.pool(summary.means, summary.frames).shape == (2, pooling.width(3)), pooling.name
    with pytest.raises(ValueError, match="pooling 'attention' is not one of"):
        check_pooling("attention", "probe")


def test_sequence_pooling_hears_the_order_that_mean_pooling_cannot():
    frames = frames_of(200)
    backwards = frames[:, ::-1]
    forward_summary, backward_summary = summarise_frames(frames, 20, 2), summarise_frames(backwards, 20, 2)
    for name, changes in (("mean", False), ("mean_std", False), ("sequence", True)):
        pool = poolings()[name].pool
        a = pool(forward_summary.means, forward_summary.frames)
        b = pool(backward_summary.means, backward_summary.frames)
        assert (not np.allclose(a, b, atol=1e-2)) is changes, name
    sequence = poolings()["sequence"].pool(forward_summary.means, forward_summary.frames)
    np.testing.assert_allclose(sequence[:, :3], frames[:, :50].mean(axis=1), atol=2e-3)  # the first quarter first


def test_a_snippet_shorter_than_the_parts_repeats_the_means_it_has():
    summary = summarise_frames(frames_of(15), 10, 2)  # 1.5 s: two windows for four parts
    pooled = poolings()["sequence"].pool(summary.means, summary.frames)
    assert pooled.shape == (2, 12) and np.isfinite(pooled).all()


def summarised_table(count=4):
    frames = [frames_of(30 + 10 * i, seed=i) for i in range(count)]
    summaries = [summarise_frames(f, 10, 2) for f in frames]
    vectors = np.stack([f.mean(axis=1) for f in frames]).astype(np.float32)
    ids = [f"p:{i:03d}" for i in range(count)]
    table = embeddings_to_table(ids, ["p"] * count, list(range(count)), vectors, summaries=summaries)
    embedder = {**EMBEDDER, "summary": {"layers": 2, "dim": 3, "frame_rate": 10, "hz": 2}}
    return table, embedder, frames


def test_pooled_embeddings_read_the_summary_column_and_native_reads_the_vector(tmp_path):
    table, embedder, frames = summarised_table()
    path = tmp_path / "dataset.parquet"
    write_parquet_atomic(table, path, {"embedder": embedder})
    table = pq.read_table(path)  # through Parquet: float16 lists survive the round trip
    native = pooled_embeddings(table, embedder, "native")
    mean = pooled_embeddings(table, embedder, "mean")
    np.testing.assert_allclose(mean, native, atol=2e-3)
    assert pooled_embeddings(table, embedder, "sequence").shape == (4, 2, 12)


def test_a_dataset_without_summaries_refuses_a_pooling_and_names_the_fix():
    table, embedder, _ = summarised_table()
    old = table.drop_columns(["summary", "summary_frames"])
    described = {key: value for key, value in embedder.items() if key != "summary"}
    assert pooled_embeddings(old, described, "native").shape == (4, 2, 3)  # read correctly
    with pytest.raises(PoolingError, match="rerun embed"):
        pooled_embeddings(old, described, "mean", where="results/datasets/x/piano/embeddings.parquet")


def test_shards_with_and_without_summaries_are_never_mixed(tmp_path):
    table, embedder, _ = summarised_table(2)
    new = tmp_path / "new.parquet"
    write_parquet_atomic(table, new, {"piece_id": "new", "embedder": embedder, "status": "ok", "reason": ""})
    old = write_shard(tmp_path, "old", np.ones((1, 2, 3)))
    with pytest.raises(DatasetError, match=r"piece 'old'.*summary.*rerun embed"):
        gather_shards([new, old], "spectral")
    dataset, _ = gather_shards([new], "spectral")
    assert {"summary", "summary_frames"} <= set(dataset.column_names)


def test_the_embed_stage_keeps_a_summary_whose_mean_is_the_native_mean(chorale_folder, tmp_path):
    """pianoroll's native vector is each key's frame mean, then its standard deviation."""
    out = tmp_path / "piano"
    [piece] = render_jobs({"bwv3.6": chorale_folder / "bwv3.6.mxl"}, out)
    render_batch([piece], PIANO, resolve_soundfont(None), tmp_path / "cache", logging.getLogger("test"))
    files = PieceFiles(
        "bwv3.6", out / "bwv3.6.snippets.parquet", out / "bwv3.6.flac", tmp_path / "shards" / "bwv3.6.parquet"
    )
    embed_batch([files], "pianoroll", {"sample_rate": PIANO.sample_rate}, tmp_path / "c", logging.getLogger("t"))
    embedder = read_provenance(files.shard)["embedder"]
    assert embedder["summary"] == {"layers": 3, "dim": KEYS, "frame_rate": pytest.approx(86.13, abs=0.01), "hz": 2.0}
    table = pq.read_table(files.shard)
    native = pooled_embeddings(table, embedder, "native")
    np.testing.assert_allclose(pooled_embeddings(table, embedder, "mean"), native[:, :, :KEYS], atol=1e-3)
    # About two windows a second of audio: 4 measures at 100 quarter notes a minute hold ~9.6 s.
    windows = [len(frames) for frames in table.column("summary_frames").to_pylist()]
    seconds = [n / PIANO.sample_rate for n in pq.read_table(files.manifest).column("num_samples").to_pylist()]
    assert all(abs(w - 2 * s) <= 1 for w, s in zip(windows, seconds))


def test_a_probe_on_sequence_pooling_tells_apart_pieces_that_differ_only_in_order():
    """Three 'pieces' play two chords: one then the other, the other then the one, both at once.
    Their frame means are the same."""
    from test_classify import back_to_back_assignment

    from workflow_scripts.probes.kinds.logistic import LogisticSettings
    from workflow_scripts.stages.classify import run_probe

    rng = np.random.default_rng(0)
    rising, falling = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    ids, pieces, vectors, summaries = [], [], [], []
    both = (rising + falling) / 2
    for piece, (first, then) in {"up": (rising, falling), "down": (falling, rising), "both": (both, both)}.items():
        for index in range(30):
            frames = np.concatenate([np.tile(first, (40, 1)), np.tile(then, (40, 1))])[None]
            frames = frames + rng.normal(0, 0.3, frames.shape)
            ids.append(f"{piece}:{index:03d}")
            pieces.append(piece)
            vectors.append(frames.mean(axis=1))
            summaries.append(summarise_frames(frames, 10, 2))
    table = embeddings_to_table(ids, pieces, [int(i[-3:]) for i in ids], np.stack(vectors), summaries=summaries)
    embedder = {"layers": 1, "dim": 3, "summary": {"layers": 1, "dim": 3, "frame_rate": 10, "hz": 2}}
    assignment = back_to_back_assignment(ids, pieces, test_every=3)
    top1 = {
        pooling: run_probe(table, embedder, assignment, LogisticSettings(pooling=pooling))["metrics"]["top1"]
        for pooling in ("mean", "sequence")
    }
    assert top1["sequence"] == 1.0 and top1["mean"] < 0.8, top1


def test_a_transformers_encoder_keeps_window_means_of_its_hidden_states(tmp_path):
    """Against the model's own hidden states: frame f (hop 320 at 24 kHz, 75 a second) is in window floor(f / 37.5)."""
    import torch
    from mert_fixture import build_small_mert, mert_settings

    from workflow_scripts.embedders import build_embedder

    model = build_small_mert(tmp_path / "model")
    embedder = build_embedder("mert", mert_settings(tmp_path / "model"))
    assert embedder.summary_layout() == {"layers": embedder.layers, "dim": embedder.dim, "frame_rate": 75.0}
    clip = np.random.default_rng(0).normal(0, 0.1, 24000 * 3).astype(np.float32)
    vectors, [summary] = embedder.embed_with_summaries([clip], 2.0)
    np.testing.assert_array_equal(vectors, embedder.embed([clip]))  # the native vector is untouched
    normalised = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
    with torch.inference_mode():
        hidden = model(torch.from_numpy(normalised)[None], output_hidden_states=True).hidden_states
    states = torch.stack(hidden, dim=1)[0].numpy()  # (layers, frames, dim)
    window = np.floor(np.arange(states.shape[1]) / 75 * 2 + 1e-9).astype(int)
    assert list(summary.frames) == list(np.bincount(window))
    expected = np.stack([states[:, window == w].mean(axis=1) for w in range(window.max() + 1)], axis=1)
    np.testing.assert_allclose(summary.means, expected, atol=2e-3 * np.abs(expected).max())
    # Chunked, the windows keep their place in the clip: each 1 s chunk makes 74 frames, 38
    # starting in its first half-second and 36 in its second.
    chunked = build_embedder("mert", mert_settings(tmp_path / "model", chunk_seconds=1.0))
    _, [pieces] = chunked.embed_with_summaries([clip], 2.0)
    assert list(pieces.frames) == [38, 36] * 3
