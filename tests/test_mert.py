"""The MERT path, driven through a small locally built model of the same architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mert_fixture import build_small_mert, mert_settings

from workflow_scripts.embedders import EmbedderError, build_embedder
from workflow_scripts.embedders.mert import chunk_clip, plan_batches

RATE = 24000


def clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * (1 + seed) * time) + 0.05 * rng.standard_normal(time.size)).astype(
        np.float32
    )


def direct_forward(model, audio: np.ndarray) -> np.ndarray:
    """What the report does by hand: normalise, one forward, mean of every hidden state over time."""
    values = torch.from_numpy((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7))[None, :]
    with torch.no_grad():
        hidden = model(values, output_hidden_states=True).hidden_states
    return torch.stack(hidden, dim=1)[0].mean(dim=1).numpy()


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mert-small")
    return folder, build_small_mert(folder)


def test_shapes_and_layer_count(small_model):
    folder, _ = small_model
    embedder = build_embedder("mert", mert_settings(folder))
    vectors = embedder.embed([clip(1.0, 0), clip(2.0, 1)])
    assert vectors.shape == (2, 3, 32) and vectors.dtype == np.float32
    description = embedder.describe()
    assert description["layers"] == 3 and description["dim"] == 32
    assert description["settings"]["loader"] == "transformers HubertModel"
    assert len(description["model_files"]["pytorch_model.bin"]["sha256"]) == 64


def test_pooled_output_equals_a_direct_forward_of_the_model(small_model):
    folder, model = small_model
    embedder = build_embedder("mert", mert_settings(folder))
    audio = clip(1.5, 2)
    np.testing.assert_allclose(embedder.embed([audio])[0], direct_forward(model, audio), rtol=1e-4, atol=1e-5)


def test_safetensors_checkpoints_load_the_same(tmp_path):
    model = build_small_mert(tmp_path / "st", weights="safetensors")
    embedder = build_embedder("mert", mert_settings(tmp_path / "st"))
    audio = clip(1.0, 3)
    np.testing.assert_allclose(embedder.embed([audio])[0], direct_forward(model, audio), rtol=1e-4, atol=1e-5)


def test_a_snippet_embeds_the_same_alone_and_in_a_batch(small_model):
    folder, _ = small_model
    embedder = build_embedder("mert", mert_settings(folder, batch_size=4))
    target = clip(1.2, 4)
    alone = embedder.embed([target])[0]
    batch = embedder.embed([clip(1.2, 5), target, clip(0.7, 6), clip(1.9, 7), clip(1.2, 8)])
    np.testing.assert_allclose(batch[1], alone, rtol=1e-5, atol=1e-6)


def test_padding_with_the_attention_mask_is_invariant_for_layer_norm_models(tmp_path):
    build_small_mert(tmp_path / "ln", feat_extract_norm="layer")
    embedder = build_embedder("mert", mert_settings(tmp_path / "ln", padding=True))
    target = clip(0.8, 9)
    alone = embedder.embed([target])[0]
    padded = embedder.embed([target, clip(2.0, 10)])[0]  # batched together, target padded
    np.testing.assert_allclose(padded, alone, rtol=1e-4, atol=1e-5)


def test_long_clips_are_chunked_and_pooled_over_all_frames(small_model):
    folder, _ = small_model
    chunked = build_embedder("mert", mert_settings(folder, chunk_seconds=1.0))
    whole = build_embedder("mert", mert_settings(folder))
    audio = clip(2.0, 11)
    first, second = audio[:RATE], audio[RATE:]
    per_chunk = whole.embed([first, second])
    expected = (per_chunk[0] * 75 + per_chunk[1] * 75) / 150  # 75 frames per second
    np.testing.assert_allclose(chunked.embed([audio])[0], expected, rtol=1e-4, atol=1e-5)


def test_plan_batches():
    lengths = [5, 3, 5, 3, 7, 5]
    assert plan_batches(lengths, 2, allow_padding=False) == [[1, 3], [0, 2], [5], [4]]
    assert plan_batches(lengths, 4, allow_padding=True) == [[1, 3, 0, 2], [5, 4]]


def test_chunk_clip_covers_the_clip_and_absorbs_short_tails():
    audio = np.arange(1050, dtype=np.float32)
    chunks = chunk_clip(audio, 500)
    assert [chunk.size for chunk in chunks] == [500, 550]
    assert np.array_equal(np.concatenate(chunks), audio)
    assert [chunk.size for chunk in chunk_clip(audio, 400)] == [400, 400, 250]
    # A model with a fixed input length would cut a joined tail off: there it stays its own chunk.
    assert [chunk.size for chunk in chunk_clip(audio, 500, join_tail=False)] == [500, 500, 50]


def test_options_that_need_custom_code_are_refused(tmp_path):
    build_small_mert(tmp_path / "deep", extra_config={"deepnorm": True})
    with pytest.raises(EmbedderError, match=r"deepnorm.*not support"):
        build_embedder("mert", mert_settings(tmp_path / "deep"))


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    folder = tmp_path / "odd"
    build_small_mert(folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["extra_head.weight"] = torch.zeros(3)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(EmbedderError, match="extra_head"):
        build_embedder("mert", mert_settings(folder))


class RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_in_a_checkpoint_is_not_executed(tmp_path):
    folder = tmp_path / "unsafe"
    build_small_mert(folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    marker = tmp_path / "code-ran"
    state["payload"] = RunsCodeWhenUnpickled(marker)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|not allowed"):
        build_embedder("mert", mert_settings(folder))
    assert not marker.exists()


def test_a_model_rate_that_its_preprocessor_contradicts_is_refused(small_model):
    folder, _ = small_model
    with pytest.raises(EmbedderError, match="model_sample_rate is 16000"):
        build_embedder("mert", mert_settings(folder, model_sample_rate=16000))


def test_missing_weights_offline_say_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = mert_settings(tmp_path, local_dir=None, cache_dir=str(tmp_path / "hf-cache"))
    with pytest.raises(EmbedderError) as error:
        build_embedder("mert", settings)
    message = str(error.value)
    for needed in (
        "m-a-p/MERT-v1-95M",
        "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
        str(tmp_path / "hf-cache"),
        "local_dir",
        "spectral",
    ):
        assert needed in message


def test_asking_for_a_gpu_without_one_is_explained(small_model):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    folder, _ = small_model
    with pytest.raises(EmbedderError, match="no GPU"):
        build_embedder("mert", mert_settings(folder, device="cuda"))
