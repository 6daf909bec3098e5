"""The transformers encoder family: both published MERT configs, and each transformers class, through the loader.

Small random models (tests/mert_fixture.py): MERT's from its published config.json with only
the sizes changed, native ones from transformers' config classes. Each is checked against a
direct forward of the model it was made from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mert_fixture import build_small_mert, build_small_native, mert_settings, published_config

from workflow_scripts.embedders import EmbedderError, build_embedder
from workflow_scripts.embedders.mert import padding_allowed, resample
from workflow_scripts.embedders.weights import check_known_files, expected_files, resolve_model_folder

RATE = 24000


def clip(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 330 * time) + 0.05 * rng.standard_normal(time.size)).astype(np.float32)


def direct_forward(model, audio: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Normalise (as the feature extractor does), one forward, mean of every hidden state over frames."""
    values = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7) if normalize else audio
    with torch.no_grad():
        hidden = model(torch.from_numpy(values.astype(np.float32))[None, :], output_hidden_states=True).hidden_states
    return torch.stack(hidden, dim=1)[0].mean(dim=1).numpy()


@pytest.mark.parametrize("published", ["MERT-v1-95M", "MERT-v1-330M"])
def test_the_published_mert_configs_load_and_compute_what_their_model_computes(tmp_path, published):
    model = build_small_mert(tmp_path / published, published=published)
    stored = json.loads((tmp_path / published / "config.json").read_text())
    assert stored["model_type"] == "mert_model" and stored["transformers_version"] == "4.24.0"
    assert stored["feat_extract_dropout"] == 0.0  # a 4.24-era key HubertConfig no longer has, left in
    embedder = build_embedder("mert", mert_settings(tmp_path / published))
    audio = clip(1.5, 1)
    np.testing.assert_allclose(embedder.embed([audio])[0], direct_forward(model, audio), rtol=1e-4, atol=1e-5)
    description = embedder.describe()
    assert description["layers"] == 3 and description["settings"]["do_normalize"] is True
    # Group-normalised convolutions in both: exact-length batches, whatever the encoder's norm placement.
    assert description["settings"]["padding"] is False and description["settings"]["feat_extract_norm"] == "group"
    stable = published == "MERT-v1-330M"
    assert description["settings"]["do_stable_layer_norm"] is stable
    assert type(embedder.model.encoder).__name__ == ("HubertEncoderStableLayerNorm" if stable else "HubertEncoder")


def test_330m_attention_relax_is_accepted_and_deepnorm_or_cqt_refused(tmp_path):
    assert published_config("MERT-v1-330M")["attention_relax"] == 32.0
    build_small_mert(tmp_path / "relax", published="MERT-v1-330M")
    build_embedder("mert_330m", mert_settings(tmp_path / "relax", model_id="m-a-p/MERT-v1-330M"))
    for option in ("deepnorm", "feature_extractor_cqt"):
        build_small_mert(tmp_path / option, published="MERT-v1-330M", extra_config={option: True})
        with pytest.raises(EmbedderError, match=f"{option}.*compute something else"):
            build_embedder("mert_330m", mert_settings(tmp_path / option))


def test_padding_follows_the_convolutions_norm_not_the_encoders():
    assert not padding_allowed({"feat_extract_norm": "group", "do_stable_layer_norm": True})
    assert padding_allowed({"feat_extract_norm": "layer", "do_stable_layer_norm": False})
    assert not padding_allowed({})  # transformers' default is group norm


@pytest.mark.parametrize("model_class", ["Data2VecAudioModel", "HubertModel", "Wav2Vec2Model"])
def test_each_transformers_class_at_16_khz_resamples_the_rendered_audio(tmp_path, model_class):
    model = build_small_native(tmp_path / model_class, model_class, sampling_rate=16000)
    embedder = build_embedder(
        "music2vec", mert_settings(tmp_path / model_class, model_class=model_class, model_sample_rate=16000)
    )
    audio = clip(1.2, 2)
    expected = direct_forward(model, resample(audio, RATE, 16000))
    np.testing.assert_allclose(embedder.embed([audio])[0], expected, rtol=1e-4, atol=1e-5)
    description = embedder.describe()
    assert description["settings"]["resampling"] == "soxr soxr_hq 24000 -> 16000 Hz"
    assert description["settings"]["loader"] == f"transformers {model_class}"
    assert resample(audio, RATE, 16000).size == int(np.ceil(audio.size * 16000 / RATE))


def test_a_checkpoint_of_another_class_is_refused(tmp_path):
    build_small_native(tmp_path / "d2v", "Data2VecAudioModel", sampling_rate=16000)
    with pytest.raises(EmbedderError, match="does not match transformers' HubertModel"):
        build_embedder(
            "hubert_base", mert_settings(tmp_path / "d2v", model_class="HubertModel", model_sample_rate=16000)
        )


def test_known_checksums_are_checked_for_the_pinned_revision(tmp_path):
    files = {"pytorch_model.bin": {"bytes": 377552987, "sha256": "a2b8b747" + "0" * 56}}
    recorded = {"pytorch_model.bin": {"bytes": 377552987, "sha256": "a2b8b747"}}
    check_known_files(files, recorded, "mert")  # the published leading digits match
    with pytest.raises(EmbedderError, match=r"121 bytes, not 377,552,987.*not a2b8b747"):
        check_known_files({"pytorch_model.bin": {"bytes": 121, "sha256": "ff" * 32}}, recorded, "mert")
    with pytest.raises(EmbedderError, match="model.safetensors is missing"):
        check_known_files(files, {"model.safetensors": {"bytes": 1}}, "mert")
    # A local folder overrides the revision, so the revision's checksums do not apply to it.
    assert expected_files({"local_dir": str(tmp_path), "known_files": recorded}) == {}
    assert expected_files({"local_dir": None, "known_files": recorded}) == recorded


def test_an_unpinned_revision_is_refused_naming_the_entry(tmp_path):
    settings = mert_settings(tmp_path, local_dir=None, revision=None, model_id="m-a-p/music2vec-v1")
    with pytest.raises(EmbedderError, match=r"embedder_settings.music2vec.revision is not pinned"):
        resolve_model_folder(settings, "music2vec", download=True)
