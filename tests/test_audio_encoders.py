"""The transformers encoder family: both published MERT configs, and each transformers class, through the loader.

Small random models (tests/mert_fixture.py): MERT's from its published config.json with only
the sizes changed, native ones from transformers' config classes. Each is checked against a
direct forward of the model it was made from.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from mert_fixture import DATA, build_small_ast, build_small_mert, build_small_native, mert_settings, published_config

from workflow_scripts.embedders import EmbedderError, build_embedder
from workflow_scripts.embedders.mert import padding_allowed, resample
from workflow_scripts.embedders.schema import workflow_schema
from workflow_scripts.embedders.weights import FULL_SHA256, check_known_files, expected_files, resolve_model_folder
from workflow_scripts.plumbing.io_utils import sha256_file
from workflow_scripts.plumbing.settings import SCHEMA_PATH

RATE = 24000
MERT_95M_REVISION = "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5"
MERT_95M_WEIGHTS_SHA256 = "a2b8b747f72c06e0595aeae41ae5473f4364938c6b39b2c58be38c48e6bd3fcd"
# The published files tests/data/mert/ copies (its README says where each fact was found): size,
# SHA-256, and the git blob SHA-1, the id the hub's API gives a small file (public code records it
# beside the size, a check independent of the SHA-256).
PUBLISHED_FILES = {
    "MERT-v1-95M.config.json": (
        1817,
        "ea2627c4c7825cd66f3c944b6b966331604c35928174e0100cd4a82829424e32",
        "8061aff2203f5caeb5c58628dba945de3ef71079",
    ),
    "MERT-v1-95M.preprocessor_config.json": (
        211,
        "cc5a5e4a5d3b1a758a5ed984b2eaa15bb0522d811d44a9eed82bfca4baa0dc8f",
        "12d419697ffa30069405b3ace413be9a997e9f7f",
    ),
    "MERT-v0-public.preprocessor_config.json": (
        212,
        "28672bb3f7a0872af91f29edb75b5aeadddaa7a79109ad387d58b754bc9e8f6f",
        "39b6440871e1ee5445df0885a53e18561b8e15d6",
    ),
}


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


def generic_settings(folder, **overrides) -> dict:
    """The generic entry as config.yaml leaves it (no id, class auto, the model's own rate), on a local folder."""
    return mert_settings(folder, model_id=None, revision=None, model_class="auto", model_sample_rate=None, **overrides)


@pytest.mark.parametrize("model_class", ["Data2VecAudioModel", "HubertModel", "Wav2Vec2Model"])
def test_the_generic_encoder_takes_the_class_and_rate_from_the_checkpoint(tmp_path, model_class):
    model = build_small_native(tmp_path / model_class, model_class, sampling_rate=16000)
    embedder = build_embedder("transformers_encoder", generic_settings(tmp_path / model_class))
    audio = clip(1.2, 3)
    np.testing.assert_allclose(
        embedder.embed([audio])[0], direct_forward(model, resample(audio, RATE, 16000)), rtol=1e-4, atol=1e-5
    )
    description = embedder.describe()
    assert description["settings"]["loader"] == f"transformers {model_class}"
    assert description["settings"]["model_sample_rate"] == 16000
    assert description["settings"]["input"] == "raw samples, normalised per clip"


def ast_real_frames(extractor, audio: np.ndarray) -> int:
    """The fbank frames of real audio in the extractor's output: it pads with zeros before
    normalising, so every padded frame holds one constant value."""
    features = extractor(audio, sampling_rate=16000, return_tensors="np")["input_values"][0]
    padded = np.isclose(features, (0 - extractor.mean) / (extractor.std * 2)).all(axis=1)
    return int((~padded).sum())


def ast_reference(model, audio: np.ndarray, chunk_samples: int) -> np.ndarray:
    """The AST checkpoint run as its model card says (its feature extractor, then the model),
    chunk by chunk; every hidden state averaged over the special tokens and the patches whose
    time span starts in real audio, over all chunks."""
    from transformers import ASTFeatureExtractor

    extractor = ASTFeatureExtractor(sampling_rate=16000, num_mel_bins=128, max_length=model.config.max_length)
    config = model.config
    frequency_patches = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    time_patches = (config.max_length - config.patch_size) // config.time_stride + 1
    sums, tokens = 0.0, 0
    for start in range(0, audio.size, chunk_samples):
        chunk = audio[start : start + chunk_samples]
        real = np.arange(time_patches) * config.time_stride < ast_real_frames(extractor, chunk)
        keep = np.concatenate([[True, True], np.tile(real, frequency_patches)])
        with torch.no_grad():
            hidden = model(**extractor(chunk, sampling_rate=16000, return_tensors="pt"), output_hidden_states=True)
        states = torch.stack(hidden.hidden_states, dim=1)[0].double().numpy()  # (layers, tokens, dim)
        sums = sums + states[:, keep].sum(axis=1)
        tokens += int(keep.sum())
    return sums / tokens


def test_a_spectrogram_input_encoder_pools_only_real_audio_in_chunks_it_can_take(tmp_path):
    model = build_small_ast(tmp_path / "ast", max_length=128)  # 1.28 s of input
    embedder = build_embedder("transformers_encoder", generic_settings(tmp_path / "ast"))
    assert embedder.model_class == "ASTModel" and embedder.layers == 3 and embedder.dim == 32
    assert embedder.chunk_samples == 128 * 160  # never beyond the fixed input: the extractor would cut it
    # 2.7 s: at 16 kHz two full chunks and a 0.14 s tail, under a quarter chunk, kept on its own
    # (joined to the chunk before, it would be cut off by the extractor).
    audio = clip(2.7, 4)
    vectors = embedder.embed([audio, audio[: RATE // 2]])
    for vector, part in zip(vectors, (audio, audio[: RATE // 2])):
        expected = ast_reference(model, resample(part, RATE, 16000), 128 * 160)
        np.testing.assert_allclose(vector, expected, rtol=1e-4, atol=1e-5)
    description = embedder.describe()["settings"]
    assert description["input"] == "ASTFeatureExtractor features of each chunk"
    assert description["pooling"].startswith("mean over the tokens of real audio")
    assert description["do_normalize"] is True and description["ignored_heads"] == []


def test_the_generic_encoder_loads_the_base_model_of_a_checkpoint_with_a_task_head(tmp_path):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_length=128, num_labels=5
    )
    torch.manual_seed(0)
    classifier = ASTForAudioClassification(config).eval()
    classifier.save_pretrained(tmp_path / "head")
    ASTFeatureExtractor(sampling_rate=16000, max_length=128).save_pretrained(tmp_path / "head")
    embedder = build_embedder("transformers_encoder", generic_settings(tmp_path / "head"))
    assert embedder.describe()["settings"]["ignored_heads"] == ["classifier"]
    audio = clip(1.0, 5)
    expected = ast_reference(classifier.audio_spectrogram_transformer, resample(audio, RATE, 16000), 128 * 160)
    np.testing.assert_allclose(embedder.embed([audio])[0], expected, rtol=1e-4, atol=1e-5)


def test_the_generic_encoder_without_a_model_id_or_a_known_type_says_what_to_set(tmp_path):
    with pytest.raises(EmbedderError, match=r"transformers_encoder\.model_id is not set"):
        build_embedder("transformers_encoder", generic_settings(None, local_dir=None))
    build_small_native(tmp_path / "w2v", "Wav2Vec2Model", sampling_rate=16000)
    config = json.loads((tmp_path / "w2v" / "config.json").read_text())
    (tmp_path / "w2v" / "config.json").write_text(json.dumps({**config, "model_type": "whisper"}))
    with pytest.raises(EmbedderError, match="model_type 'whisper' is not one this loader knows"):
        build_embedder("transformers_encoder", generic_settings(tmp_path / "w2v"))


def test_a_checkpoint_of_another_class_is_refused(tmp_path):
    build_small_native(tmp_path / "d2v", "Data2VecAudioModel", sampling_rate=16000)
    with pytest.raises(EmbedderError, match="does not match transformers' HubertModel"):
        build_embedder(
            "hubert_base", mert_settings(tmp_path / "d2v", model_class="HubertModel", model_sample_rate=16000)
        )


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("file_name", sorted(PUBLISHED_FILES))
def test_the_test_data_are_the_published_files_byte_for_byte(file_name):
    size, sha256, blob_id = PUBLISHED_FILES[file_name]
    data = (DATA / file_name).read_bytes()
    assert len(data) == size
    assert hashlib.sha256(data).hexdigest() == sha256
    assert git_blob_sha1(data) == blob_id


def test_the_published_fields_the_digests_pin():
    config = published_config("MERT-v1-95M")
    assert "conv_pos_batch_norm" not in config
    assert config["activation_dropout"] == 0.0 and config["layerdrop"] == 0.05
    assert json.loads((DATA / "MERT-v1-95M.preprocessor_config.json").read_text())["do_normalize"] is True
    v0 = json.loads((DATA / "MERT-v0-public.preprocessor_config.json").read_text())
    assert v0["do_normalize"] is False and v0["sampling_rate"] == 16000


def test_the_330m_config_is_the_95m_file_with_the_330m_architecture():
    """No copy of MERT-v1-330M's config.json was found: the test file is the published 95M one with
    the fields that make the 330M model, written the same way (see tests/data/mert/README.md)."""
    base, large = published_config("MERT-v1-95M"), published_config("MERT-v1-330M")
    assert {key for key in base.keys() | large.keys() if base.get(key) != large.get(key)} == {
        "_name_or_path",
        "attention_relax",
        "do_stable_layer_norm",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
    }
    text = (DATA / "MERT-v1-330M.config.json").read_text()
    assert text == json.dumps(large, indent=2, sort_keys=True) + "\n"  # the 95M file's serialisation
    assert (DATA / "MERT-v1-95M.config.json").read_text() == json.dumps(base, indent=2, sort_keys=True) + "\n"


def shipped_pins(name: str) -> tuple[dict, dict]:
    """(the schema's defaults, config.yaml's values) of an entry's revision and known_files."""
    import yaml

    schema = workflow_schema()["properties"]["embedder_settings"]["properties"][name]["properties"]
    shipped = yaml.safe_load((SCHEMA_PATH.parent / "config.yaml").read_text())["embedder_settings"][name]
    keys = ("revision", "known_files")
    return {key: schema[key]["default"] for key in keys}, {key: shipped[key] for key in keys}


@pytest.mark.parametrize("name", ["mert", "mert_330m", "mert_v0"])
def test_the_shipped_pins_are_full_digests_and_config_yaml_repeats_the_schema(name):
    defaults, shipped = shipped_pins(name)
    assert shipped == defaults
    assert len(shipped["revision"]) == 40 and shipped["known_files"]
    for entry in shipped["known_files"].values():
        assert "sha256" not in entry or FULL_SHA256.fullmatch(entry["sha256"])
    assert shipped["known_files"].get("pytorch_model.bin", {}).get("sha256")


def data_files_of(published: str) -> dict[str, dict]:
    """The test data of one model as describe_model_folder records a folder's files."""
    files = {}
    for file_name in ("config.json", "preprocessor_config.json"):
        path = DATA / f"{published}.{file_name}"
        if path.is_file():
            files[file_name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def test_the_shipped_known_files_accept_the_test_data_and_tell_the_two_preprocessors_apart():
    for name, published in (("mert", "MERT-v1-95M"), ("mert_v0", "MERT-v0-public")):
        files = data_files_of(published)
        known = shipped_pins(name)[1]["known_files"]
        check_known_files(files, {key: known[key] for key in files}, name)
    # MERT-v1-95M's preprocessor (do_normalize: true) is not MERT-v0-public's.
    v0_preprocessor = {
        "preprocessor_config.json": shipped_pins("mert_v0")[1]["known_files"]["preprocessor_config.json"]
    }
    with pytest.raises(EmbedderError, match="211 bytes, not the recorded 212.*preprocessor_config.json has SHA-256"):
        check_known_files(data_files_of("MERT-v1-95M"), v0_preprocessor, "mert_v0")


def test_known_checksums_must_match_in_full_and_the_error_names_both_values(tmp_path):
    files = {"pytorch_model.bin": {"bytes": 377552987, "sha256": MERT_95M_WEIGHTS_SHA256}}
    recorded = {"pytorch_model.bin": {"bytes": 377552987, "sha256": MERT_95M_WEIGHTS_SHA256}}
    check_known_files(files, recorded, "mert")
    # Another file that shares the leading digits is refused (a prefix check would take it).
    lookalike = MERT_95M_WEIGHTS_SHA256[:8] + "0" * 56
    with pytest.raises(EmbedderError) as error:
        check_known_files({"pytorch_model.bin": {"bytes": 121, "sha256": lookalike}}, recorded, "mert")
    message = str(error.value)
    assert "pytorch_model.bin has 121 bytes, not the recorded 377,552,987" in message
    assert f"pytorch_model.bin has SHA-256 {lookalike}, not the recorded {MERT_95M_WEIGHTS_SHA256}" in message
    # A leading-digits pin is refused, even for the very file it begins.
    for short in (MERT_95M_WEIGHTS_SHA256[:8], MERT_95M_WEIGHTS_SHA256[:63], MERT_95M_WEIGHTS_SHA256.upper()):
        with pytest.raises(EmbedderError, match=f"not full digests.*pytorch_model.bin: '{short}'"):
            check_known_files(files, {"pytorch_model.bin": {"sha256": short}}, "mert")
    with pytest.raises(EmbedderError, match="model.safetensors is missing"):
        check_known_files(files, {"model.safetensors": {"bytes": 1}}, "mert")
    # A local folder overrides the revision, so the revision's checksums do not apply to it.
    assert expected_files({"local_dir": str(tmp_path), "known_files": recorded}) == {}
    assert expected_files({"local_dir": None, "known_files": recorded}) == recorded


def test_a_cached_revision_whose_files_differ_from_the_pins_is_refused_at_load(tmp_path):
    """Through the hub cache, as an embed job reads it: the shipped pins against other weights."""
    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--m-a-p--MERT-v1-95M" / "snapshots" / MERT_95M_REVISION
    build_small_mert(snapshot)
    _, shipped = shipped_pins("mert")
    settings = mert_settings(snapshot, local_dir=None, cache_dir=str(cache), known_files=shipped["known_files"])
    with pytest.raises(EmbedderError) as error:
        build_embedder("mert", settings)
    message = str(error.value)
    weights = snapshot / "pytorch_model.bin"
    assert (
        f"pytorch_model.bin has SHA-256 {sha256_file(weights)}, not the recorded {MERT_95M_WEIGHTS_SHA256}" in message
    )
    assert f"pytorch_model.bin has {weights.stat().st_size:,} bytes, not the recorded 377,552,987" in message
    assert "config.json has SHA-256" in message  # the small model's sizes are not the published ones
    assert "preprocessor_config.json has" not in message  # the fixture copies the published file
    # The same cache with pins that match what it holds loads.
    matching = {
        name: {"bytes": (snapshot / name).stat().st_size, "sha256": sha256_file(snapshot / name)}
        for name in ("config.json", "pytorch_model.bin")
    }
    build_embedder("mert", {**settings, "known_files": {**shipped["known_files"], **matching}})


def test_an_unpinned_revision_is_refused_naming_the_entry(tmp_path):
    settings = mert_settings(tmp_path, local_dir=None, revision=None, model_id="m-a-p/music2vec-v1")
    with pytest.raises(EmbedderError, match=r"embedder_settings.music2vec.revision is not pinned"):
        resolve_model_folder(settings, "music2vec", download=True)
