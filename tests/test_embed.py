"""The embed stage's job function: cross-piece batches, cache, out-of-memory retries, precision.

Pieces are real chorales rendered by the render stage; the model is a small random model
of MERT-v1's architecture saved the way the published checkpoint is (tests/mert_fixture.py).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mert_fixture import DATA, build_small_mert, mert_settings
from render_fixture import PIANO, render_jobs

from workflow_scripts.embedders import build_embedder
from workflow_scripts.music.synth import resolve_soundfont
from workflow_scripts.plumbing.embeddings_table import table_to_embeddings
from workflow_scripts.stages.embed import ClipBatcher, JobStats, PieceFiles, SplittingRunner, embed_batch, prefetched
from workflow_scripts.stages.render import render_batch

PIECES = ("bwv2.6", "bwv3.6", "bwv4.8")
RENDER = replace(PIANO, tempo_qpm=240, window_measures=2, hop_measures=2)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """Three real chorales rendered at a fast tempo in two-measure snippets (short clips, several lengths)."""
    from workflow_runner import music21_chorale

    out = tmp_path_factory.mktemp("rendered")
    pieces = render_jobs({name: music21_chorale(name) for name in PIECES}, out)
    render_batch(pieces, RENDER, resolve_soundfont(None), out / "cache", logging.getLogger("chorale_id.tests"))
    return out


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mert-small")
    build_small_mert(folder)
    return folder


def job(rendered: Path, out: Path, names=PIECES) -> list[PieceFiles]:
    return [
        PieceFiles(name, rendered / f"{name}.snippets.parquet", rendered / f"{name}.flac", out / f"{name}.parquet")
        for name in names
    ]


def vectors_of(shard: Path) -> np.ndarray:
    table = pq.read_table(shard)
    return np.asarray(table.column("embedding").combine_chunks().flatten())


def test_shards_are_bitwise_the_same_alone_and_in_a_cross_piece_batch(rendered, model_folder, tmp_path, logger):
    settings = mert_settings(model_folder, batch_size=8)
    together = embed_batch(job(rendered, tmp_path / "together"), "mert", settings, tmp_path / "cache-together", logger)
    assert together.computed == 3 and together.snippets > 3 * 2
    for name in PIECES:
        alone_job = job(rendered, tmp_path / "alone", [name])
        embed_batch(alone_job, "mert", settings, tmp_path / f"cache-{name}", logger)
        assert np.array_equal(vectors_of(tmp_path / "together" / f"{name}.parquet"), vectors_of(alone_job[0].shard)), (
            name
        )


def test_buckets_mix_pieces_and_hold_one_exact_length():
    batcher = ClipBatcher(batch_size=3, batch_key=lambda samples: samples)
    emitted = []
    for piece, lengths in {"a": [5, 7], "b": [5, 5], "c": [7, 9]}.items():
        for snippet, length in enumerate(lengths):
            emitted += batcher.add((piece, snippet), np.zeros(length, np.float32))
    assert [[owner for owner, _ in bucket] for bucket in emitted] == [[("a", 0), ("b", 0), ("b", 1)]]
    rest = batcher.flush()
    assert [[owner for owner, _ in bucket] for bucket in rest] == [[("a", 1), ("c", 0)], [("c", 1)]]
    assert all(len({clip.size for _, clip in bucket}) == 1 for bucket in emitted + rest)
    assert batcher.flush() == []


def test_mert_buckets_by_exact_length_and_pads_only_when_allowed(model_folder, tmp_path):
    exact = build_embedder("mert", mert_settings(model_folder))
    assert exact.batch_key(24000) != exact.batch_key(24001)
    build_small_mert(tmp_path / "ln", feat_extract_norm="layer")
    padded = build_embedder("mert", mert_settings(tmp_path / "ln", padding=True))
    assert padded.batch_key(24000) == padded.batch_key(24001) != padded.batch_key(48000)


def test_prefetched_keeps_the_order_and_runs_ahead():
    from concurrent.futures import ThreadPoolExecutor

    handed_out = []

    def items():
        for number in range(6):
            handed_out.append(number)
            yield (number,)

    def work(number):
        time.sleep(0.01 * (6 - number))  # later items finish first
        return number * 10

    with ThreadPoolExecutor(3) as pool:
        results = []
        for result in prefetched(pool, work, items(), ahead=2):
            results.append(result)
            # The item yielded, and two more already submitted behind it.
            assert len(handed_out) == min(6, len(results) + 2)
    assert results == [0, 10, 20, 30, 40, 50]


def test_an_out_of_memory_batch_is_split_and_the_job_finishes(
    rendered, model_folder, tmp_path, logger, caplog, monkeypatch
):
    """A device that fits at most two clips per call: the stage splits, logs, and gives the same vectors."""
    settings = mert_settings(model_folder, batch_size=8)
    reference = embed_batch(job(rendered, tmp_path / "reference"), "mert", settings, tmp_path / "cache-ref", logger)

    embedder = build_embedder("mert", settings)
    real_embed = embedder.embed_with_summaries  # what the stage calls: vectors and time summaries
    calls = []

    def embed_that_fits_two(clips, summary_hz):
        calls.append(len(clips))
        if len(clips) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_embed(clips, summary_hz)

    monkeypatch.setattr(embedder, "embed_with_summaries", embed_that_fits_two)
    with caplog.at_level(logging.WARNING, logger="chorale_id"):
        stats = embed_batch(
            job(rendered, tmp_path / "split"), "mert", settings, tmp_path / "cache-split", logger, embedder=embedder
        )
    assert stats.computed == 3 and stats.out_of_memory_splits >= 1
    assert "did not fit in memory" in caplog.text and "OutOfMemoryError" in caplog.text
    # After the first split, later buckets go straight to the size that fitted.
    assert max(calls[calls.index(2) :]) <= 2 and reference.snippets == stats.snippets
    for name in PIECES:
        assert np.array_equal(
            vectors_of(tmp_path / "reference" / f"{name}.parquet"), vectors_of(tmp_path / "split" / f"{name}.parquet")
        )
        summaries = [
            pq.read_table(tmp_path / run / f"{name}.parquet", columns=["summary"]) for run in ("reference", "split")
        ]
        assert summaries[0].equals(summaries[1])


def test_an_error_that_is_not_out_of_memory_fails_the_job(model_folder, logger):
    embedder = build_embedder("mert", mert_settings(model_folder))

    def broken(clips):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")

    embedder.embed = broken
    with pytest.raises(RuntimeError, match="CUDNN_STATUS"):
        SplittingRunner(embedder, logger, JobStats())([np.zeros(24000, np.float32)] * 4)


def test_unchanged_pieces_are_restored_without_building_the_model(rendered, tmp_path, logger):
    build_small_mert(tmp_path / "model")
    settings = mert_settings(tmp_path / "model", batch_size=8)
    pieces = job(rendered, tmp_path / "shards")
    embed_batch(pieces, "mert", settings, tmp_path / "cache", logger)
    first = {piece.piece_id: piece.shard.read_bytes() for piece in pieces}
    for piece in pieces:
        piece.shard.unlink()  # Snakemake deletes a job's outputs before rerunning it
    (tmp_path / "model").rename(tmp_path / "moved")  # building the embedder now would fail
    stats = embed_batch(pieces, "mert", settings, tmp_path / "cache", logger)
    assert (stats.restored, stats.computed, stats.load_seconds) == (3, 0, 0.0)
    assert {piece.piece_id: piece.shard.read_bytes() for piece in pieces} == first


def test_a_piece_that_cannot_be_read_is_named(rendered, model_folder, tmp_path, logger):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio")
    pieces = [PieceFiles("bwv2.6", rendered / "bwv2.6.snippets.parquet", broken, tmp_path / "out" / "bwv2.6.parquet")]
    with pytest.raises(RuntimeError, match=r"piece bwv2\.6: cannot read its rendered audio .*broken\.flac"):
        embed_batch(pieces, "mert", mert_settings(model_folder), tmp_path / "cache", logger)


def test_bf16_true_shards_are_float32_from_bf16_weights(rendered, model_folder, tmp_path, logger):
    fp32 = embed_batch(job(rendered, tmp_path / "fp32"), "mert", mert_settings(model_folder), tmp_path / "c32", logger)
    bf16_settings = mert_settings(model_folder, precision="bf16-true")
    bf16 = embed_batch(job(rendered, tmp_path / "bf16"), "mert", bf16_settings, tmp_path / "c16", logger)
    assert fp32.snippets == bf16.snippets
    embedder = build_embedder("mert", bf16_settings)
    assert embedder.describe()["settings"]["precision"] == "bf16-true"
    assert next(embedder.model.parameters()).dtype == torch.bfloat16
    for name in PIECES:
        table = pq.read_table(tmp_path / "bf16" / f"{name}.parquet")
        assert table.schema.field("embedding").type.value_type == "float"
        low = table_to_embeddings(table, 3, 32)
        high = table_to_embeddings(pq.read_table(tmp_path / "fp32" / f"{name}.parquet"), 3, 32)
        assert low.shape == high.shape and np.all(np.isfinite(low)) and not np.array_equal(low, high)


# How close bf16 comes to fp32 depends on the CPU: oneDNN and ATen pick other kernels where a
# CPU has AMX or AVX512-BF16, and on a model of width 32 their rounding differs by far more than
# on MERT's own width (cosine 0.95 on one AMX host, 0.99998 on AVX2). So the small model is
# checked against itself: the same bf16 forward, done here by hand and pooled in float64. That
# isolates what the embedder adds (normalisation, casting, pooling in float32) from the kernels,
# and holds on every CPU. The drift of bf16 itself is measured on MERT-95M's architecture below.


def pooled_by_hand(embedder, clip: np.ndarray, autocast: bool) -> np.ndarray:
    """Mean over frames of every hidden state, in float64, from the embedder's own model."""
    values, lengths = embedder._device_batch([clip])
    values = embedder._normalise(values, torch.ones_like(values, dtype=torch.bool))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        hidden = embedder.model(values.to(embedder.input_dtype), output_hidden_states=True).hidden_states
    return np.stack([state[0].double().mean(dim=0).numpy() for state in hidden])


def relative_error(vectors: np.ndarray, reference: np.ndarray) -> float:
    return float((np.linalg.norm(vectors - reference, axis=-1) / np.linalg.norm(reference, axis=-1)).max())


# float32 sums of a few hundred bf16 frames against float64 ones: a few float32 ulps. Pooling
# in bf16 would be off by about 2^-8 (0.4%), so this tells the two apart.
POOLING_TOLERANCE = 1e-5


@pytest.mark.parametrize("precision", ["bf16-true", "bf16"])
def test_bf16_pools_the_models_own_states_in_float32(model_folder, precision):
    rng = np.random.default_rng(5)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (24000, 36000)]
    fp32 = build_embedder("mert", mert_settings(model_folder)).embed(clips)
    embedder = build_embedder("mert", mert_settings(model_folder, precision=precision))
    vectors = embedder.embed(clips)
    assert embedder.precision == precision and vectors.dtype == np.float32
    assert (next(embedder.model.parameters()).dtype == torch.bfloat16) == (precision == "bf16-true")
    for clip, pooled in zip(clips, vectors):
        reference = pooled_by_hand(embedder, clip, autocast=precision == "bf16")
        assert relative_error(pooled, reference) < POOLING_TOLERANCE
    assert not np.array_equal(vectors, fp32)  # bf16 did run


def first_snippets(rendered: Path, name: str, count: int) -> list[np.ndarray]:
    import soundfile

    audio, _ = soundfile.read(rendered / f"{name}.flac", dtype="float32")
    manifest = pq.read_table(rendered / f"{name}.snippets.parquet").to_pylist()[:count]
    return [audio[row["sample_offset"] : row["sample_offset"] + row["num_samples"]] for row in manifest]


def test_bf16_at_mert_95m_widths_stays_close_to_fp32(rendered, tmp_path):
    """MERT-v1-95M's published config with random weights and two of its twelve layers (every
    width as published: 768 wide, 512 convolution channels): each layer of two real snippets
    within cosine 0.999 of fp32 on the first half second of two real snippets. The full architecture measured above 0.9999 on AVX2 and on AMX
    hosts (docs/benchmarks.md, benchmarks/precision_drift.py); 0.999 leaves room for other kernels."""
    from mert_fixture import published_config
    from transformers import HubertModel

    from workflow_scripts.embedders.mert import hubert_config_from

    folder = tmp_path / "mert-95m-widths"
    torch.manual_seed(0)
    HubertModel(hubert_config_from({**published_config(), "num_hidden_layers": 2})).save_pretrained(folder)
    shutil.copy(DATA / "MERT-v1-95M.preprocessor_config.json", folder / "preprocessor_config.json")
    # Half a second of each: without native bf16 a CPU runs bf16 convolutions ~13x slower than fp32.
    clips = [clip[:12000] for clip in first_snippets(rendered, PIECES[0], 2)]
    high = build_embedder("mert", mert_settings(folder)).embed(clips).astype(np.float64)
    low = build_embedder("mert", mert_settings(folder, precision="bf16-true")).embed(clips).astype(np.float64)
    assert low.shape == (2, 3, 768)
    cosine = (low * high).sum(-1) / (np.linalg.norm(low, axis=-1) * np.linalg.norm(high, axis=-1))
    relative = np.linalg.norm(low - high, axis=-1) / np.linalg.norm(high, axis=-1)
    # Shown by `pytest -rP` (the figure in docs/benchmarks.md), with the CPU's kernel level.
    print(f"ATen {torch.backends.cpu.get_cpu_capability()}: cosine per layer (min over snippets)", cosine.min(axis=0))
    print(f"relative L2 error, max {relative.max():.4%}")
    assert cosine.min() > 0.999, cosine


def test_precision_falls_back_to_fp32_on_an_automatic_cpu(model_folder):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    embedder = build_embedder("mert", mert_settings(model_folder, device="auto", precision="bf16-true"))
    assert embedder.precision == "fp32" and next(embedder.model.parameters()).dtype == torch.float32


def test_device_normalisation_matches_the_feature_extractor(model_folder):
    from transformers import Wav2Vec2FeatureExtractor

    embedder = build_embedder("mert", mert_settings(model_folder))
    rng = np.random.default_rng(3)
    clips = [(0.2 * rng.standard_normal(n) + 0.05).astype(np.float32) for n in (1000, 1500)]
    values, lengths = embedder._device_batch(clips)
    mask = torch.arange(values.shape[1])[None, :] < lengths[:, None]
    ours = embedder._normalise(values, mask).numpy()
    theirs = Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True, return_attention_mask=True)(
        clips, sampling_rate=24000, padding=True, return_attention_mask=True, return_tensors="np"
    )["input_values"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert embedder.describe()["settings"]["do_normalize"] is True


def test_a_checkpoint_without_normalisation_gets_raw_samples(tmp_path):
    import json

    folder = tmp_path / "raw"
    model = build_small_mert(folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**config, "do_normalize": False}))
    embedder = build_embedder("mert", mert_settings(folder))
    audio = (0.3 * np.sin(np.arange(24000) / 10)).astype(np.float32)
    with torch.no_grad():
        hidden = model(torch.from_numpy(audio)[None, :], output_hidden_states=True).hidden_states
    expected = torch.stack(hidden, dim=1)[0].mean(dim=1).numpy()
    np.testing.assert_allclose(embedder.embed([audio])[0], expected, rtol=1e-4, atol=1e-5)
    assert embedder.describe()["settings"]["do_normalize"] is False
