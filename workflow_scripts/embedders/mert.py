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

Inference. The embed stage hands over batches of clips that share a ``batch_key``.
MERT-95M's first convolution uses group normalisation over time, which padding would
change, so by default that key is the exact length (``padding: false``); with a
layer-normalised checkpoint, ``padding: true`` lets lengths within half a second share a
batch, padded, with the attention mask. Raw samples go to the device, where they are
normalised as the model's feature extractor would (``do_normalize``), run through the
model, and each hidden state is mean-pooled over its valid frames as it is read: only
(batch, layers, dim) float32 values come back. Clips longer than ``chunk_seconds`` are
cut into chunks, and the pooled vector is the mean over all chunks' frames, so memory
stays bounded. ``precision``: ``fp32``; ``bf16`` or ``fp16`` autocast; ``bf16-true``
casts the weights and activations to bfloat16 (the fastest on recent GPUs); pooling sums
in float32 whatever the precision. It applies on CUDA, and on the CPU only when
``device: cpu`` is set explicitly (to check bf16 numerics without a GPU).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Hashable
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
# Precisions that cast the model's weights (and so its input) rather than autocasting.
WEIGHT_DTYPES = {"bf16-true": "bfloat16"}
# With padding allowed, clips whose lengths fall in one bin of this width share a batch.
PADDING_QUANTUM_SECONDS = 0.5
# How allocators word an allocation failure that is not a torch.cuda.OutOfMemoryError.
OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED")


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
        self.precision = self._choose_precision(settings)
        self.input_dtype = torch.float32
        if self.precision in WEIGHT_DTYPES:
            self.input_dtype = getattr(torch, WEIGHT_DTYPES[self.precision])
            self.model.to(self.input_dtype)
        self.do_normalize = bool(self.feature_extractor.do_normalize)
        self.allow_padding = bool(settings["padding"])
        self.batch_size = int(settings["batch_size"])
        # On the CPU one clip per forward pass: oneDNN's convolutions and matrix products give
        # results that depend (in the last bits) on the batch, so this keeps a piece's vectors
        # bitwise the same whichever pieces share its job; and a 9.6 s clip is already a large
        # enough product that batching buys nothing there (4 clips: 14.1 s one by one, 20.1 s
        # as one batch, full MERT-95M architecture, 2 cores).
        self.forward_batch_size = self.batch_size if self.device.type == "cuda" else 1
        self.chunk_samples = round(float(settings["chunk_seconds"]) * self.sample_rate)
        self._model_files = describe_model_folder(self.folder)

    def _choose_precision(self, settings: dict[str, Any]) -> str:
        requested = settings["precision"]
        if requested == "fp32" or self.device.type == "cuda" or settings["device"] == "cpu":
            return requested
        self.logger.warning("precision %s applies on CUDA (or with device: cpu); running fp32 on %s", requested, self.device)
        return "fp32"

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
                "do_normalize": self.do_normalize,
                "padding": self.allow_padding,
                "chunk_seconds": float(self.settings["chunk_seconds"]),
                "pooling": "mean over valid frames, every hidden state",
                "loader": "remote code" if self.settings.get("trust_remote_code") else "transformers HubertModel",
            },
            "model_files": self._model_files["files"],
        }

    def batch_key(self, num_samples: int) -> Hashable:
        """Exact length for group-normalised models; with padding allowed, lengths within
        ``PADDING_QUANTUM_SECONDS`` share a batch so little compute goes to padding."""
        if self.allow_padding:
            return num_samples // int(PADDING_QUANTUM_SECONDS * self.sample_rate)
        return num_samples

    def is_out_of_memory(self, error: BaseException) -> bool:
        import torch

        if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
            return True
        return isinstance(error, RuntimeError) and any(text in str(error) for text in OUT_OF_MEMORY_TEXTS)

    def release_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def timing_barrier(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _device_batch(self, clips: list[np.ndarray]):
        """Clips as one zero-padded (batch, samples) tensor on the device, and their lengths.

        Copied raw and normalised on the device: the host only packs samples.
        """
        import torch

        lengths = torch.tensor([clip.size for clip in clips], dtype=torch.long)
        host = torch.zeros((len(clips), int(lengths.max())), dtype=torch.float32)
        for row, clip in enumerate(clips):
            host[row, : clip.size] = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True), lengths.to(self.device, non_blocking=True)

    def _normalise(self, values, sample_mask):
        """The feature extractor's zero-mean, unit-variance normalisation over each clip's own
        samples (population variance, epsilon 1e-7), with padding left at zero."""
        import torch

        if not self.do_normalize:
            return values
        mask = sample_mask.to(values.dtype)
        counts = mask.sum(dim=1, keepdim=True)
        mean = (values * mask).sum(dim=1, keepdim=True) / counts
        variance = (((values - mean) * mask) ** 2).sum(dim=1, keepdim=True) / counts
        return (values - mean) / torch.sqrt(variance + 1e-7) * mask

    def _forward_pooled(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per clip: the float32 sum over valid frames of every hidden state, and the frame count.

        Each hidden state is reduced on the device as it is read, so the 13 (or 25) full
        (batch, frames, dim) states are never stacked, and only (batch, layers, dim) float32
        values cross back to the host.
        """
        import torch

        values, lengths = self._device_batch(clips)
        sample_mask = torch.arange(values.shape[1], device=self.device)[None, :] < lengths[:, None]
        padded = bool((lengths != values.shape[1]).any())
        with torch.inference_mode(), self._autocast(torch):
            values = self._normalise(values, sample_mask).to(self.input_dtype)
            outputs = self.model(values, attention_mask=sample_mask.long() if padded else None, output_hidden_states=True)
            frames = self.model._get_feat_extract_output_lengths(lengths).long()
            frame_count = outputs.hidden_states[0].shape[1]
            frame_mask = (torch.arange(frame_count, device=self.device)[None, :] < frames[:, None]).float()
            sums = torch.stack(
                [torch.einsum("bfd,bf->bd", hidden.float(), frame_mask) for hidden in outputs.hidden_states], dim=1
            )
        return sums.cpu().numpy(), frames.cpu().numpy()

    def _autocast(self, torch):
        if self.precision in AUTOCAST_DTYPES:
            return torch.autocast(self.device.type, dtype=getattr(torch, AUTOCAST_DTYPES[self.precision]))
        return torch.autocast(self.device.type, enabled=False)

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        pieces = [(clip_index, chunk) for clip_index, clip in enumerate(clips) for chunk in chunk_clip(clip, self.chunk_samples)]
        sums = np.zeros((len(clips), self.layers, self.dim), dtype=np.float64)
        counts = np.zeros(len(clips), dtype=np.int64)
        for batch in plan_batches([chunk.size for _, chunk in pieces], self.forward_batch_size, self.allow_padding):
            batch_sums, batch_frames = self._forward_pooled([pieces[index][1] for index in batch])
            for row, index in enumerate(batch):
                clip_index = pieces[index][0]
                sums[clip_index] += batch_sums[row]
                counts[clip_index] += batch_frames[row]
        if np.any(counts == 0):
            raise EmbedderError("a clip is too short for the model to produce a single frame")
        return (sums / counts[:, None, None]).astype(np.float32)
