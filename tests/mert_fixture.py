"""Small random models of MERT's architecture (and its relatives'), saved the way the published checkpoints are.

MERT: the published config.json and preprocessor_config.json (tests/data/mert/: MERT-v1-95M's
byte for byte; its README gives their provenance, and MERT-v1-330M's) with only the size fields
overridden (narrow, two layers), so the loader meets the checkpoints' own key sets: 4.24-era
keys, the ``mert_model`` type, MERT's options; the weights are a torch pickle with the weight-norm tensors under their
older names (weight_g / weight_v), as in a 2023 checkpoint, or safetensors. The reference
model is built from transformers' config class with the published architectural fields
named one by one, not through the loader's own translation of config.json.

Native encoders (music2vec through Data2VecAudioModel, HuBERT or wav2vec 2.0): transformers'
own config class, size fields overridden, saved with ``save_pretrained`` at 16 kHz.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data" / "mert"
# The only fields the small models change: sizes. Everything else is the published file's.
SIZE_FIELDS = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
# The published fields that shape the computation, passed to HubertConfig by name for the reference model.
ARCHITECTURE_FIELDS = (
    "conv_bias",
    "conv_kernel",
    "conv_stride",
    "feat_extract_norm",
    "feat_extract_activation",
    "do_stable_layer_norm",
    "feat_proj_layer_norm",
    "layer_norm_eps",
    "hidden_act",
    "num_feat_extract_layers",
)
# conv_pos_batch_norm is not among them: MERT's config.json does not have it (a later transformers
# option), so both the loader's config and the reference model take HubertConfig's default, False.


def published_config(name: str = "MERT-v1-95M") -> dict:
    return json.loads((DATA / f"{name}.config.json").read_text())


def legacy_state_dict(model) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        renamed[key] = value.clone()
    return renamed


def save_weights(state: dict[str, torch.Tensor], folder: Path, weights: str) -> None:
    if weights == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in state.items()}, folder / "model.safetensors")


def build_small_mert(
    folder: Path,
    feat_extract_norm: str | None = None,
    weights: str = "bin",
    extra_config: dict | None = None,
    seed: int = 0,
    published: str = "MERT-v1-95M",
):
    """Save a small random model of ``published``'s architecture into ``folder``; returns the
    HubertModel it was made from. ``feat_extract_norm`` and ``extra_config`` change fields beyond
    the sizes, for tests that need another architecture or option."""
    from transformers import HubertConfig, HubertModel

    config_dict = {**published_config(published), **SIZE_FIELDS, **(extra_config or {})}
    if feat_extract_norm:
        config_dict["feat_extract_norm"] = feat_extract_norm
    torch.manual_seed(seed)
    reference = HubertConfig(
        **SIZE_FIELDS, **{field: config_dict[field] for field in ARCHITECTURE_FIELDS if field in config_dict}
    )
    model = HubertModel(reference).eval()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_dict, indent=2))
    shutil.copy(DATA / "MERT-v1-95M.preprocessor_config.json", folder / "preprocessor_config.json")
    save_weights(legacy_state_dict(model), folder, weights)
    return model


def build_small_native(
    folder: Path,
    model_class: str = "Data2VecAudioModel",
    sampling_rate: int = 16000,
    do_normalize: bool = True,
    seed: int = 0,
):
    """A small random model of a natively supported class, saved with save_pretrained; returns it."""
    import transformers
    from transformers import Wav2Vec2FeatureExtractor

    config_class = getattr(transformers, model_class.replace("Model", "Config"))
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config_class(**SIZE_FIELDS)).eval()
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sampling_rate,
        padding_value=0.0,
        do_normalize=do_normalize,
        return_attention_mask=True,
    ).save_pretrained(folder)
    return model


def mert_settings(folder: Path, **overrides) -> dict:
    settings = {
        "model_id": "m-a-p/MERT-v1-95M",
        "revision": "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
        "model_class": "HubertModel",
        "model_sample_rate": 24000,
        "known_files": {},
        "local_dir": str(folder),
        "cache_dir": None,
        "device": "cpu",
        "precision": "fp32",
        "batch_size": 8,
        "chunk_seconds": 30.0,
        "sample_rate": 24000,
    }
    settings.update(overrides)
    return settings


def build_small_ast(folder: Path, max_length: int = 128, seed: int = 0):
    """A small random Audio Spectrogram Transformer with its feature extractor (log-mel input,
    ``max_length`` frames of 10 ms at 16 kHz), saved with save_pretrained; returns it."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=max_length,
        num_mel_bins=128,
    )
    model = ASTModel(config).eval()
    model.save_pretrained(folder)
    ASTFeatureExtractor(sampling_rate=16000, num_mel_bins=128, max_length=max_length).save_pretrained(folder)
    return model
