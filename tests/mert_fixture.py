"""A small model of MERT-v1's architecture, saved the way the published checkpoint is.

HuBERT-shaped: seven convolutions with strides multiplying to 320 (75 frames per second
at 24 kHz), a feature projection, a convolutional positional embedding and post-norm
transformer layers, but narrow and two layers deep, with random weights. config.json
carries MERT's model_type and custom-code fields; the weights are a torch pickle with
the weight-norm tensors under their older names (weight_g / weight_v), as in a 2023
checkpoint, or safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MERT_ONLY_FIELDS = {
    "model_type": "mert_model",
    "architectures": ["MERTModel"],
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "deepnorm": False,
    "attention_relax": -1.0,
    "sample_rate": 24000,
}


def small_config(feat_extract_norm: str = "group"):
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=feat_extract_norm == "layer",
        feat_proj_layer_norm=True,
    )


def legacy_state_dict(model) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        renamed[key] = value.clone()
    return renamed


def build_small_mert(folder: Path, feat_extract_norm: str = "group", weights: str = "bin", extra_config: dict | None = None, seed: int = 0):
    """Save a small random MERT-shaped model into ``folder``; returns the HubertModel it was made from."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    config = small_config(feat_extract_norm)
    model = HubertModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config_dict = {**config.to_dict(), **MERT_ONLY_FIELDS, **(extra_config or {})}
    (folder / "config.json").write_text(json.dumps(config_dict, indent=2))
    state = legacy_state_dict(model)
    if weights == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in state.items()}, folder / "model.safetensors")
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=24000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(folder)
    return model


def mert_settings(folder: Path, **overrides) -> dict:
    settings = {
        "model_id": "m-a-p/MERT-v1-95M",
        "revision": "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
        "local_dir": str(folder),
        "cache_dir": None,
        "device": "cpu",
        "precision": "fp32",
        "batch_size": 8,
        "padding": False,
        "chunk_seconds": 30.0,
        "trust_remote_code": False,
        "sample_rate": 24000,
    }
    settings.update(overrides)
    return settings
