"""``mert``: MERT-v1 through transformers' own HuBERT classes, every hidden state kept.

Loading. MERT-v1-95M is published with custom code (``MERTModel``, ``MERTConfig``), but
that code subclasses transformers' ``HubertModel`` and only departs from it through
options the 95M checkpoint leaves off: a CQT branch (``feature_extractor_cqt``), DeepNorm
residual scaling (``deepnorm``) and relaxed attention (``attention_relax``). With those
off, ``MERTModel`` builds exactly ``HubertModel``'s modules under the same parameter
names, so the checkpoint is loaded into ``HubertModel`` with a ``HubertConfig`` made from
its config.json: no remote code runs. ``from_pretrained`` reads safetensors when present,
otherwise ``pytorch_model.bin`` with torch's weights-only loader, and every checkpoint
tensor must land in the model (a missing or unexpected key is an error, not a warning).
A config that turns one of those options on is refused with an explanation; only then,
and only with ``trust_remote_code: true``, is the repository's own code used.

Inference. Snippets are grouped by length. MERT-95M's first convolution uses group
normalisation over time, which padding would change, so by default a batch holds clips
of one exact length only (``padding: false``); with a layer-normalised checkpoint,
``padding: true`` pads and passes the attention mask. Each of the 13 hidden states is
mean-pooled over the valid frames. Clips longer than ``chunk_seconds`` are cut into
chunks, and the pooled vector is the mean over all chunks' frames, so memory stays
bounded. ``torch.inference_mode`` throughout; bf16 or fp16 autocast on CUDA.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from workflow_scripts.embedders.base import Embedder, EmbedderError
from workflow_scripts.model_store import describe_model_folder, resolve_model_folder

# MERTConfig options that change the computation away from HubertModel's.
CUSTOM_CODE_OPTIONS = {
    "feature_extractor_cqt": lambda value: bool(value),
    "deepnorm": lambda value: bool(value),
    "attention_relax": lambda value: value is not None and float(value) > 0,
}
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def hubert_config_from(config_dict: dict[str, Any]):
    """A HubertConfig equivalent to a MERT (or HuBERT) config.json; refuses custom-code options."""
    from transformers import HubertConfig

    needing_code = [key for key, needs in CUSTOM_CODE_OPTIONS.items() if key in config_dict and needs(config_dict[key])]
    if needing_code:
        raise EmbedderError(
            f"the model config turns on {needing_code}, which transformers' HubertModel does not implement; "
            "this checkpoint needs the repository's custom code. Set embedder_settings.mert.trust_remote_code: true "
            "if you trust that code."
        )
    known = HubertConfig().to_dict()
    values = {key: value for key, value in config_dict.items() if key in known and key not in ("model_type", "architectures", "auto_map", "transformers_version")}
    # Masking, dropout and layer drop only act in training mode; the model runs in eval.
    return HubertConfig(**values)


def plan_batches(lengths: list[int], max_batch: int, allow_padding: bool) -> list[list[int]]:
    """Indices grouped into batches: same-length groups, or (with padding) sorted runs."""
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    if allow_padding:
        return [order[start : start + max_batch] for start in range(0, len(order), max_batch)]
    by_length: dict[int, list[int]] = defaultdict(list)
    for index in order:
        by_length[lengths[index]].append(index)
    return [group[start : start + max_batch] for group in by_length.values() for start in range(0, len(group), max_batch)]


def chunk_clip(clip: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """Consecutive chunks of at most ``chunk_samples``; a short tail joins the previous chunk."""
    if clip.size <= chunk_samples:
        return [clip]
    starts = list(range(0, clip.size, chunk_samples))
    if clip.size - starts[-1] < chunk_samples // 4 and len(starts) > 1:
        starts.pop()  # a tail under a quarter chunk would be a poorly normalised fragment
    bounds = starts[1:] + [clip.size]
    return [clip[start:stop] for start, stop in zip(starts, bounds)]


class MertEmbedder(Embedder):
    name = "mert"

    def __init__(self, settings: dict[str, Any], logger: logging.Logger | None = None):
        import torch

        self.settings = settings
        self.logger = logger or logging.getLogger("chorale_id.mert")
        self.sample_rate = int(settings["sample_rate"])
        self.device = self._choose_device(torch, settings["device"])
        self.folder = resolve_model_folder(settings)
        self.model, self.feature_extractor = self._load(self.folder)
        self.layers = self.model.config.num_hidden_layers + 1
        self.dim = self.model.config.hidden_size
        self.precision = settings["precision"] if self.device.type == "cuda" else "fp32"
        if settings["precision"] != "fp32" and self.device.type != "cuda":
            self.logger.warning("precision %s applies on CUDA only; running fp32 on %s", settings["precision"], self.device)
        self.allow_padding = bool(settings["padding"])
        self.max_batch = int(settings["batch_size"])
        self.chunk_samples = int(round(float(settings["chunk_seconds"]) * self.sample_rate))
        self._model_files = describe_model_folder(self.folder)

    def _choose_device(self, torch, requested: str):
        if requested == "cuda" and not torch.cuda.is_available():
            raise EmbedderError(
                "embedder_settings.mert.device is 'cuda' but torch sees no GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Install a CUDA build of torch, "
                "run on a GPU node, or set device: auto (CPU fallback) or cpu."
            )
        if requested == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            self.logger.warning("no GPU visible: MERT runs on the CPU, at a few seconds of audio per second")
            return torch.device("cpu")
        return torch.device(requested)

    def _load(self, folder: Path):
        from transformers import AutoModel, HubertModel, Wav2Vec2FeatureExtractor

        config_dict = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if self.settings.get("trust_remote_code"):
            model = AutoModel.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
        else:
            model, info = HubertModel.from_pretrained(
                folder, config=hubert_config_from(config_dict), local_files_only=True, output_loading_info=True
            )
            problems = {key: value for key, value in info.items() if value and key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
            if problems:
                raise EmbedderError(
                    f"the checkpoint in {folder} does not match HubertModel: {problems}. "
                    "Its architecture differs from MERT-v1's; check model_id and revision."
                )
        if not (folder / "preprocessor_config.json").is_file():
            raise EmbedderError(f"{folder} has no preprocessor_config.json (the model's feature-extractor settings).")
        feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder, local_files_only=True)
        if feature_extractor.sampling_rate != self.sample_rate:
            raise EmbedderError(
                f"{self.settings['model_id']} expects {feature_extractor.sampling_rate} Hz input but the audio is rendered "
                f"at {self.sample_rate} Hz; set render.sample_rate: {feature_extractor.sampling_rate}."
            )
        model.eval().to(self.device)
        return model, feature_extractor

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_id": self.settings["model_id"],
            "revision": "local folder" if self.settings.get("local_dir") else self.settings["revision"],
            "layers": self.layers,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "settings": {
                "precision": self.precision,
                "padding": self.allow_padding,
                "chunk_seconds": float(self.settings["chunk_seconds"]),
                "pooling": "mean over valid frames, every hidden state",
                "loader": "remote code" if self.settings.get("trust_remote_code") else "transformers HubertModel",
            },
            "model_files": self._model_files["files"],
        }

    def _forward_pooled(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per clip: the sum over valid frames of every hidden state, and the frame count."""
        import torch

        inputs = self.feature_extractor(
            clips, sampling_rate=self.sample_rate, return_tensors="pt", padding=True, return_attention_mask=True
        )
        values = inputs["input_values"].to(self.device)
        sample_mask = inputs["attention_mask"].to(self.device)
        padded = bool((sample_mask == 0).any())
        autocast = (
            torch.autocast("cuda", dtype=getattr(torch, AUTOCAST_DTYPES[self.precision]))
            if self.precision in AUTOCAST_DTYPES
            else torch.autocast(self.device.type, enabled=False)
        )
        with torch.inference_mode(), autocast:
            outputs = self.model(values, attention_mask=sample_mask if padded else None, output_hidden_states=True)
            hidden = torch.stack(outputs.hidden_states, dim=1).float()  # (batch, layers, frames, dim)
            frames = self.model._get_feat_extract_output_lengths(sample_mask.sum(dim=1)).long()
            frame_mask = torch.arange(hidden.shape[2], device=self.device)[None, :] < frames[:, None]
            sums = (hidden * frame_mask[:, None, :, None]).sum(dim=2)
        return sums.cpu().numpy().astype(np.float64), frames.cpu().numpy()

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        pieces = [(clip_index, chunk) for clip_index, clip in enumerate(clips) for chunk in chunk_clip(clip, self.chunk_samples)]
        sums = np.zeros((len(clips), self.layers, self.dim), dtype=np.float64)
        counts = np.zeros(len(clips), dtype=np.int64)
        for batch in plan_batches([chunk.size for _, chunk in pieces], self.max_batch, self.allow_padding):
            batch_sums, batch_frames = self._forward_pooled([pieces[index][1] for index in batch])
            for row, index in enumerate(batch):
                clip_index = pieces[index][0]
                sums[clip_index] += batch_sums[row]
                counts[clip_index] += batch_frames[row]
        if np.any(counts == 0):
            raise EmbedderError("a clip is too short for the model to produce a single frame")
        return (sums / counts[:, None, None]).astype(np.float32)
