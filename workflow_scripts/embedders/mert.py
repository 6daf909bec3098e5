"""MERT and other self-supervised audio encoders through transformers' own classes, every hidden state kept.

One loader for a family of named entries (``DECLARATIONS`` at the end; config ``embedder_settings.<name>``:
model id, pinned revision, transformers class, sample rate): ``mert`` (MERT-v1-95M), ``mert_330m``
(MERT-v1-330M), ``mert_v0`` (MERT-v0-public), ``music2vec`` (music2vec-v1, Data2VecAudioModel) and
``hubert_base`` (HuBERT base trained on LibriSpeech: a speech baseline), and ``transformers_encoder``, any
checkpoint by id (its class from config.json's ``model_type``; raw-waveform models, or AST's log-mel input).

Loading. MERT is published with custom code (``MERTModel``, ``MERTConfig``), but that code
subclasses transformers' ``HubertModel`` and departs from it only through options: a CQT branch
(``feature_extractor_cqt``) and DeepNorm residual scaling (``deepnorm``). ``attention_relax``
(32.0 in MERT-v1-330M) is read by MERT's code only inside the DeepNorm branch, so with DeepNorm off
it changes nothing and is not refused. With those options off, ``MERTModel`` builds exactly
``HubertModel``'s modules under the same parameter names, so the checkpoint is loaded into the
entry's transformers class with that class's config made from config.json (its own keys only,
4.24-era keys such as ``feat_extract_dropout`` dropped): no remote code runs. A config that turns
DeepNorm or the CQT branch on is refused: such a checkpoint loads without a key error yet computes
something else, so the key check alone could not catch it. (The repository's own code is not an
option: the fetch rule never downloads ``*.py`` files, and on transformers 5.x MERT's ``forward``,
which overrides a decorated method, returns no hidden states.) ``from_pretrained`` reads
safetensors when present, otherwise ``pytorch_model.bin`` with torch's weights-only loader
(transformers refuses ``.bin`` files under torch < 2.6, hence ``torch>=2.6``), and every checkpoint
tensor must land in the model (a missing or unexpected key is an error, not a warning).

Layers. ``hidden_states`` 0..L: with a post-norm encoder (``do_stable_layer_norm: false``: 95M,
v0, HuBERT base) every state is layer-normed; with a pre-norm encoder (330M) states 0..L-1 are
the un-normalised residual stream and only the last is normed, so their scales differ by layer
(the probes' ``standardize`` removes that; ``none`` and ``l2`` compare them as they are).

Inference. The embed stage hands over batches of clips that share a ``batch_key``. Whether clips
of different lengths may share a padded batch follows from ``feat_extract_norm``: ``group`` (the
first convolution normalises each channel over time, so padding would change it: 95M, 330M, v0,
HuBERT base) batches only one exact length; ``layer`` pads to lengths within half a second and
passes the attention mask. When the model's rate differs from ``render.sample_rate`` each clip is
resampled with soxr (``soxr_hq``) on the host, and the description says so. Raw samples go to the
device, where they are normalised as the model's feature extractor would (``do_normalize``, read
from preprocessor_config.json and recorded), run through the model, and each hidden state is
mean-pooled over its valid frames as it is read: only (batch, layers, dim) float32 values come
back. Clips longer than ``chunk_seconds`` are cut into chunks, and the pooled vector is the mean
over all chunks' frames, so memory stays bounded. ``precision``: ``fp32``; ``bf16`` or ``fp16``
autocast; ``bf16-true`` casts the weights and activations to bfloat16 (the fastest on recent
GPUs); pooling sums in float32 whatever the precision. It applies on CUDA, and on the CPU only
when ``device: cpu`` is set explicitly (to check bf16 numerics without a GPU).
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
from workflow_scripts.embedders.declaration import EmbedderDeclaration
from workflow_scripts.embedders.time_summary import TimeSummary, from_window_sums
from workflow_scripts.embedders.weights import (
    check_known_files,
    describe_model_folder,
    expected_files,
    resolve_model_folder,
)

# MERTConfig options that change the computation away from HubertModel's. (attention_relax is
# read only inside the DeepNorm branch, so it is no such option on its own.)
CUSTOM_CODE_OPTIONS = ("feature_extractor_cqt", "deepnorm")
# The transformers classes an entry may name (config ``model_class``), with their config classes.
MODEL_CLASSES = {
    "HubertModel": "HubertConfig",
    "Data2VecAudioModel": "Data2VecAudioConfig",
    "Wav2Vec2Model": "Wav2Vec2Config",
    "ASTModel": "ASTConfig",
}
# Classes that take spectrogram features, with the feature extractor that makes them from the
# waveform on the host (the others take raw samples, normalised as Wav2Vec2FeatureExtractor would).
SPECTROGRAM_EXTRACTORS = {"ASTModel": "ASTFeatureExtractor"}
# model_class "auto": the class a config.json's own model_type names (MERT's custom type is a
# HubertModel with its options off, see above).
CLASS_OF_MODEL_TYPE = {
    "hubert": "HubertModel",
    "mert_model": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "data2vec-audio": "Data2VecAudioModel",
    "audio-spectrogram-transformer": "ASTModel",
}
AUTO_CLASS = "auto"
RESAMPLER_QUALITY = "soxr_hq"
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# Precisions that cast the model's weights (and so its input) rather than autocasting.
WEIGHT_DTYPES = {"bf16-true": "bfloat16"}
# With padding allowed, clips whose lengths fall in one bin of this width share a batch.
PADDING_QUANTUM_SECONDS = 0.5
# How allocators word an allocation failure that is not a torch.cuda.OutOfMemoryError.
OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED")


def model_config_from(config_dict: dict[str, Any], model_class: str, where: str):
    """The transformers config of ``model_class`` equivalent to a config.json (MERT's or a native one).

    Only the keys the config class knows are passed on; DeepNorm and the CQT branch are refused.
    """
    import transformers

    needing_code = [key for key in CUSTOM_CODE_OPTIONS if config_dict.get(key)]
    if needing_code:
        raise EmbedderError(
            f"{where}: the model config turns on {needing_code}, which transformers' {model_class} does not "
            "implement: the checkpoint would load without a key error and compute something else. This loader "
            "does not support such checkpoints; choose another entry (MERT-v1-95M or -330M leave both off)."
        )
    config_class = getattr(transformers, MODEL_CLASSES[model_class])
    known = config_class().to_dict()
    ignored = ("model_type", "architectures", "auto_map", "transformers_version")
    values = {key: value for key, value in config_dict.items() if key in known and key not in ignored}
    # Masking, dropout and layer drop only act in training mode; the model runs in eval.
    return config_class(**values)


def class_from_config(config_dict: dict[str, Any], where: str) -> str:
    """The transformers class for ``model_class: auto``: the one config.json's model_type names."""
    model_type = config_dict.get("model_type")
    if model_type not in CLASS_OF_MODEL_TYPE:
        raise EmbedderError(
            f"{where}: model_type '{model_type}' is not one this loader knows ({sorted(CLASS_OF_MODEL_TYPE)}); "
            f"set model_class to one of {sorted(MODEL_CLASSES)} if the checkpoint fits one of them."
        )
    return CLASS_OF_MODEL_TYPE[model_type]


def task_head_keys(model, config_dict: dict[str, Any], model_class: str, unexpected: list[str]) -> list[str]:
    """Checkpoint keys of a task or pre-training head that the base model rightly leaves out.

    Only for a checkpoint whose config.json names another architecture than the base class
    (``ASTForAudioClassification``, ``Wav2Vec2ForPreTraining``), and only keys outside the base
    model's own modules (``classifier.*``, ``quantizer.*``, ``project_q.*``): a base-model key
    that does not land is still refused, and a MERT checkpoint (``MERTModel``) stays strict."""
    architectures = set(config_dict.get("architectures") or [])
    if not architectures - {model_class, "MERTModel"}:
        return []
    own = {name for name, _ in model.named_children()} | {name for name, _ in model.named_parameters(recurse=False)}
    own.add(model.base_model_prefix)
    return sorted(key for key in unexpected if key.split(".")[0] not in own)


def hubert_config_from(config_dict: dict[str, Any]):
    """A HubertConfig equivalent to a MERT (or HuBERT) config.json; refuses DeepNorm and the CQT branch."""
    return model_config_from(config_dict, "HubertModel", "config.json")


def padding_allowed(config_dict: dict[str, Any]) -> bool:
    """Whether clips of different lengths may share a padded batch: only when the first convolution
    is layer-normalised. Group norm (transformers' default) normalises over time, padding included;
    ``do_stable_layer_norm`` is about the transformer layers and says nothing about it."""
    return config_dict.get("feat_extract_norm", "group") == "layer"


def resample(clip: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """soxr at ``soxr_hq`` (librosa's default resampler), length ``ceil(n * target / source)``."""
    if source_rate == target_rate:
        return clip
    import soxr

    resampled = soxr.resample(np.asarray(clip, np.float32), source_rate, target_rate, quality=RESAMPLER_QUALITY)
    target = int(np.ceil(clip.size * target_rate / source_rate))
    return np.pad(resampled, (0, max(0, target - resampled.size)))[:target].astype(np.float32)


def plan_batches(lengths: list[int], max_batch: int, allow_padding: bool) -> list[list[int]]:
    """Indices grouped into batches: same-length groups, or (with padding) sorted runs."""
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    if allow_padding:
        return [order[start : start + max_batch] for start in range(0, len(order), max_batch)]
    by_length: dict[int, list[int]] = defaultdict(list)
    for index in order:
        by_length[lengths[index]].append(index)
    return [
        group[start : start + max_batch] for group in by_length.values() for start in range(0, len(group), max_batch)
    ]


def chunk_clip(clip: np.ndarray, chunk_samples: int, join_tail: bool = True) -> list[np.ndarray]:
    """Consecutive chunks of at most ``chunk_samples``; a short tail joins the previous chunk
    unless ``join_tail`` is off (a model with a fixed input length would cut it off)."""
    if clip.size <= chunk_samples:
        return [clip]
    starts = list(range(0, clip.size, chunk_samples))
    if join_tail and clip.size - starts[-1] < chunk_samples // 4 and len(starts) > 1:
        starts.pop()  # a tail under a quarter chunk would be a poorly normalised fragment
    bounds = starts[1:] + [clip.size]
    return [clip[start:stop] for start, stop in zip(starts, bounds)]


class AudioEncoderEmbedder(Embedder):
    """A named entry of the family (``DECLARATIONS``): MERT-v1-95M as ``mert``, and its relatives."""

    @classmethod
    def from_settings(cls, name: str, settings: dict[str, Any], logger=None) -> AudioEncoderEmbedder:
        return cls(name, settings, logger=logger)  # one class for every entry: it needs its name

    def __init__(self, name: str, settings: dict[str, Any], logger: logging.Logger | None = None):
        import torch

        self.name = name
        self.settings = settings
        self.logger = logger or logging.getLogger(f"chorale_id.{name}")
        self.sample_rate = int(settings["sample_rate"])  # the rendered audio's
        self.device = self._choose_device(torch, settings["device"])
        self.folder = resolve_model_folder(settings, name)
        self.config_dict = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        # Defaults: MERT-v1-95M's class (settings built by hand, as the benchmarks do, may leave it out).
        self.model_class = settings.get("model_class", "HubertModel")
        if self.model_class == AUTO_CLASS:
            self.model_class = class_from_config(self.config_dict, str(self.folder / "config.json"))
        if self.model_class not in MODEL_CLASSES:
            raise EmbedderError(
                f"embedder_settings.{name}.model_class '{self.model_class}' is not one of "
                f"{sorted(MODEL_CLASSES)} (or {AUTO_CLASS})."
            )
        self.spectrogram_input = self.model_class in SPECTROGRAM_EXTRACTORS
        self.model, self.feature_extractor = self._load(self.folder)
        # The model's input rate: the entry's, which the preprocessor config must confirm, or its own.
        self.model_sample_rate = int(settings.get("model_sample_rate") or self.feature_extractor.sampling_rate)
        self.layers = self.model.config.num_hidden_layers + 1
        self.dim = self.model.config.hidden_size
        self.precision = self._choose_precision(settings)
        self.input_dtype = torch.float32
        if self.precision in WEIGHT_DTYPES:
            self.input_dtype = getattr(torch, WEIGHT_DTYPES[self.precision])
            self.model.to(self.input_dtype)
        # Spectrogram models: the extractor normalises its features and pads every clip to one
        # fixed length, so batch mates never change a clip's input.
        self.do_normalize = not self.spectrogram_input and bool(self.feature_extractor.do_normalize)
        self.allow_padding = self.spectrogram_input or padding_allowed(self.config_dict)
        self.batch_size = int(settings["batch_size"])
        # On the CPU one clip per forward pass: oneDNN's convolutions and matrix products give
        # results that depend (in the last bits) on the batch, so this keeps a piece's vectors
        # bitwise the same whichever pieces share its job; and a 9.6 s clip is already a large
        # enough product that batching buys nothing there (4 clips: 14.1 s one by one, 20.1 s
        # as one batch, full MERT-95M architecture, 2 cores).
        self.forward_batch_size = self.batch_size if self.device.type == "cuda" else 1
        self.chunk_samples = round(float(settings["chunk_seconds"]) * self.model_sample_rate)
        if self.spectrogram_input:  # never longer than the model's fixed input (AST: max_length frames of 10 ms)
            self.chunk_samples = min(
                self.chunk_samples, self.feature_extractor.max_length * self.model_sample_rate // 100
            )
        self._model_files = describe_model_folder(self.folder)
        check_known_files(self._model_files["files"], expected_files(settings), name)

    def _choose_precision(self, settings: dict[str, Any]) -> str:
        requested = settings["precision"]
        if requested == "fp32" or self.device.type == "cuda" or settings["device"] == "cpu":
            return requested
        self.logger.warning(
            "precision %s applies on CUDA (or with device: cpu); running fp32 on %s", requested, self.device
        )
        return "fp32"

    def _choose_device(self, torch, requested: str):
        if requested == "cuda" and not torch.cuda.is_available():
            raise EmbedderError(
                f"embedder_settings.{self.name}.device is 'cuda' but torch sees no GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Install a CUDA build of torch, "
                "run on a GPU node, or set device: auto (CPU fallback) or cpu."
            )
        if requested == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            self.logger.warning("no GPU visible: %s runs on the CPU, at a few seconds of audio per second", self.name)
            return torch.device("cpu")
        return torch.device(requested)

    def _load(self, folder: Path):
        import transformers

        model_class = getattr(transformers, self.model_class)
        config = model_config_from(self.config_dict, self.model_class, str(folder / "config.json"))
        model, info = model_class.from_pretrained(
            folder, config=config, local_files_only=True, output_loading_info=True
        )
        self.ignored_heads = task_head_keys(model, self.config_dict, self.model_class, info.get("unexpected_keys", []))
        unexpected = sorted(set(info.get("unexpected_keys", [])) - set(self.ignored_heads))
        problems = {
            key: value
            for key, value in {**info, "unexpected_keys": unexpected}.items()
            if value and key in ("missing_keys", "unexpected_keys", "mismatched_keys")
        }
        if problems:
            raise EmbedderError(
                f"the checkpoint in {folder} does not match transformers' {self.model_class}: {problems}. "
                f"Check embedder_settings.{self.name}: model_id, revision and model_class."
            )
        if not (folder / "preprocessor_config.json").is_file():
            raise EmbedderError(f"{folder} has no preprocessor_config.json (the model's feature-extractor settings).")
        extractor_class = getattr(
            transformers, SPECTROGRAM_EXTRACTORS.get(self.model_class, "Wav2Vec2FeatureExtractor")
        )
        feature_extractor = extractor_class.from_pretrained(folder, local_files_only=True)
        requested = self.settings.get("model_sample_rate")
        if requested and feature_extractor.sampling_rate != int(requested):
            raise EmbedderError(
                f"{self.settings['model_id']}'s preprocessor_config.json says {feature_extractor.sampling_rate} Hz, but "
                f"embedder_settings.{self.name}.model_sample_rate is {requested}; correct the config entry."
            )
        model.eval().to(self.device)
        return model, feature_extractor

    def describe(self) -> dict[str, Any]:
        resampling = (
            "none"
            if self.sample_rate == self.model_sample_rate
            else (f"soxr {RESAMPLER_QUALITY} {self.sample_rate} -> {self.model_sample_rate} Hz")
        )
        return {
            "name": self.name,
            "model_id": self.settings.get("model_id") or f"local folder {self.folder.name}",
            "revision": "local folder" if self.settings.get("local_dir") else self.settings["revision"],
            "layers": self.layers,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "settings": {
                "model_class": self.model_class,
                "model_sample_rate": self.model_sample_rate,
                "resampling": resampling,
                "precision": self.precision,
                "input": (
                    f"{type(self.feature_extractor).__name__} features of each chunk"
                    if self.spectrogram_input
                    else "raw samples" + (", normalised per clip" if self.do_normalize else "")
                ),
                "do_normalize": bool(getattr(self.feature_extractor, "do_normalize", self.do_normalize)),
                "ignored_heads": sorted({key.split(".")[0] for key in self.ignored_heads}),
                "padding": self.allow_padding,
                "feat_extract_norm": self.config_dict.get("feat_extract_norm", "group"),
                "do_stable_layer_norm": bool(self.config_dict.get("do_stable_layer_norm", False)),
                "chunk_seconds": float(self.settings["chunk_seconds"]),
                "pooling": (
                    "mean over the tokens of real audio (the special tokens and the patches that start in it), "
                    "every hidden state"
                    if self.spectrogram_input
                    else "mean over valid frames, every hidden state"
                ),
                "loader": f"transformers {self.model_class}",
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
        if len({clip.size for clip in clips}) == 1:  # the usual exact-length batch: one copy
            host = torch.from_numpy(np.stack(clips).astype(np.float32, copy=False))
        else:
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

    def summary_layout(self) -> dict[str, Any] | None:
        """Every hidden state's frames at the convolutions' hop; a spectrogram-input model's
        tokens are patches of frequency and time, not frames, so it keeps no summary."""
        if self.spectrogram_input:
            return None
        return {"layers": self.layers, "dim": self.dim, "frame_rate": self.model_sample_rate / self.frame_hop}

    @property
    def frame_hop(self) -> int:
        """Input samples between frames: the product of the feature encoder's strides (320 for MERT)."""
        return int(np.prod(self.model.config.conv_stride))

    def _window_sums(self, hidden_states, frame_mask, starts, summary_hz: float):
        """(batch, windows, layers, dim) float32 sums of the valid frames of each window of
        ``1 / summary_hz`` seconds, and (batch, windows) frame counts; frame ``f`` of a chunk
        that starts ``starts[b]`` samples into its clip starts at ``starts[b] + f * hop``."""
        import torch

        frame_count = frame_mask.shape[1]
        times = (starts[:, None] + torch.arange(frame_count, device=self.device)[None, :] * self.frame_hop).double()
        window = torch.floor(times / self.model_sample_rate * summary_hz + 1e-9).long()
        windows = int(window[frame_mask > 0].max()) + 1 if bool((frame_mask > 0).any()) else 0
        one_hot = torch.nn.functional.one_hot(window.clamp(max=max(windows - 1, 0)), max(windows, 1)).float()
        one_hot = one_hot * frame_mask[:, :, None]
        sums = torch.stack([torch.einsum("bfd,bfw->bwd", h.float(), one_hot) for h in hidden_states], dim=2)
        return sums, one_hot.sum(dim=1)

    def _forward_pooled(
        self, clips: list[np.ndarray], starts: list[int], summary_hz: float | None
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Per clip: the float32 sum over valid frames of every hidden state, and the frame
        count; with ``summary_hz``, also the window sums and counts (``_window_sums``) of
        clips that start ``starts`` samples into theirs.

        Each hidden state is reduced on the device as it is read, so the 13 (or 25) full
        (batch, frames, dim) states are never stacked, and only (batch, layers, dim) float32
        values (and the windows' sums, a few a second) cross back to the host.
        """
        import torch

        if self.spectrogram_input:
            return (*self._forward_spectrogram_pooled(clips), None)
        values, lengths = self._device_batch(clips)
        sample_mask = torch.arange(values.shape[1], device=self.device)[None, :] < lengths[:, None]
        padded = bool((lengths != values.shape[1]).any())
        with torch.inference_mode():
            values = self._normalise(values, sample_mask).to(self.input_dtype)
            with self._autocast(torch):
                outputs = self.model(
                    values, attention_mask=sample_mask.long() if padded else None, output_hidden_states=True
                )
            # Pooled outside autocast, which would run the sums in bf16/fp16.
            frames = self.model._get_feat_extract_output_lengths(lengths).long()
            frame_count = outputs.hidden_states[0].shape[1]
            frame_mask = (torch.arange(frame_count, device=self.device)[None, :] < frames[:, None]).float()
            sums = torch.stack(
                [torch.einsum("bfd,bf->bd", hidden.float(), frame_mask) for hidden in outputs.hidden_states], dim=1
            )
            windowed = None
            if summary_hz is not None:
                offsets = torch.tensor(starts, device=self.device)
                window_sums, window_frames = self._window_sums(outputs.hidden_states, frame_mask, offsets, summary_hz)
                windowed = (window_sums.cpu().numpy(), window_frames.cpu().numpy().round().astype(np.int64))
        return sums.cpu().numpy(), frames.cpu().numpy(), windowed

    def _forward_spectrogram_pooled(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per clip: the float32 sum over its tokens of each hidden state, and the token count.

        The checkpoint's own feature extractor makes the features on the host, padding each
        chunk to its fixed length (chunks are never longer, see ``chunk_samples``). Only the
        special tokens and the patches whose time span starts inside the chunk's real frames are
        pooled, so padding is never averaged in, and a short chunk weighs by what it holds."""
        import torch

        features = self.feature_extractor(
            [np.asarray(clip, np.float32) for clip in clips], sampling_rate=self.model_sample_rate, return_tensors="pt"
        )
        name = self.feature_extractor.model_input_names[0]
        values = features[name].to(self.device, self.input_dtype)
        masks = torch.as_tensor(np.stack([self._token_mask(clip.size) for clip in clips]), device=self.device)
        with torch.inference_mode():
            with self._autocast(torch):
                outputs = self.model(**{name: values}, output_hidden_states=True)
            weights = masks.float()
            sums = torch.stack(
                [torch.einsum("btd,bt->bd", hidden.float(), weights) for hidden in outputs.hidden_states], 1
            )
        return sums.cpu().numpy(), masks.sum(dim=1).cpu().numpy().astype(np.int64)

    def _token_mask(self, samples: int) -> np.ndarray:
        """AST's tokens (two special ones, then frequency-major patches) that hold real audio."""
        config = self.model.config
        frequency_patches, time_patches = self.model.embeddings.get_shape(config)
        # Kaldi framing, as the extractor computes its fbank: 25 ms windows every 10 ms.
        window, shift = int(0.025 * self.model_sample_rate), int(0.01 * self.model_sample_rate)
        frames = max(1, 1 + (samples - window) // shift)
        real_time = np.arange(time_patches) * config.time_stride < frames
        special = self.model.embeddings.position_embeddings.shape[1] - frequency_patches * time_patches
        return np.concatenate([np.ones(special, bool), np.tile(real_time, frequency_patches)])

    def _autocast(self, torch):
        if self.precision in AUTOCAST_DTYPES:
            return torch.autocast(self.device.type, dtype=getattr(torch, AUTOCAST_DTYPES[self.precision]))
        return torch.autocast(self.device.type, enabled=False)

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        return self._embed(clips, None)[0]

    def embed_with_summaries(self, clips: list[np.ndarray], summary_hz: float) -> tuple[np.ndarray, list[TimeSummary]]:
        if self.spectrogram_input:
            raise EmbedderError(f"embedder {self.name} keeps no time summary (a spectrogram-input model)")
        return self._embed(clips, summary_hz)

    def _embed(self, clips: list[np.ndarray], summary_hz: float | None):
        clips = [resample(clip, self.sample_rate, self.model_sample_rate) for clip in clips]
        pieces = []  # (clip index, first sample of the chunk in its clip, chunk)
        for clip_index, clip in enumerate(clips):
            start = 0
            for chunk in chunk_clip(clip, self.chunk_samples, join_tail=not self.spectrogram_input):
                pieces.append((clip_index, start, chunk))
                start += chunk.size
        sums = np.zeros((len(clips), self.layers, self.dim), dtype=np.float64)
        counts = np.zeros(len(clips), dtype=np.int64)
        windowed: list[dict[int, tuple[np.ndarray, int]]] = [{} for _ in clips]
        for batch in plan_batches([chunk.size for *_, chunk in pieces], self.forward_batch_size, self.allow_padding):
            batch_sums, batch_frames, batch_windows = self._forward_pooled(
                [pieces[index][2] for index in batch], [pieces[index][1] for index in batch], summary_hz
            )
            for row, index in enumerate(batch):
                clip_index = pieces[index][0]
                sums[clip_index] += batch_sums[row]
                counts[clip_index] += batch_frames[row]
                if batch_windows is not None:
                    add_windows(windowed[clip_index], batch_windows[0][row], batch_windows[1][row])
        if np.any(counts == 0):
            raise EmbedderError("a clip is too short for the model to produce a single frame")
        vectors = (sums / counts[:, None, None]).astype(np.float32)
        if summary_hz is None:
            return vectors, None
        return vectors, [windows_summary(windows, self.layers, self.dim) for windows in windowed]


def add_windows(into: dict[int, tuple[np.ndarray, int]], sums: np.ndarray, frames: np.ndarray) -> None:
    """Add one chunk's (windows, layers, dim) sums and (windows,) counts to its clip's windows by index."""
    for window in np.flatnonzero(frames):
        total, count = into.get(window, (0.0, 0))
        into[window] = (total + sums[window].astype(np.float64), count + int(frames[window]))


def windows_summary(windows: dict[int, tuple[np.ndarray, int]], layers: int, dim: int) -> TimeSummary:
    order = sorted(windows)
    if not order:
        return from_window_sums(np.zeros((layers, 0, dim)), np.zeros(0, np.int64))
    sums = np.stack([windows[w][0] for w in order], axis=1)  # (layers, windows, dim)
    return from_window_sums(sums, np.array([windows[w][1] for w in order]))


MertEmbedder = AudioEncoderEmbedder  # the family's first member, by its former name


# ---- the entries ---------------------------------------------------------------------------
# Settings every entry has, whatever its checkpoint.
SHARED_SETTINGS: dict[str, dict[str, Any]] = {
    "local_dir": {
        "type": ["string", "null"],
        "default": None,
        "description": "Folder with config.json, preprocessor_config.json and weights; overrides model_id/revision.",
    },
    "cache_dir": {
        "type": ["string", "null"],
        "default": None,
        "description": "Hugging Face cache folder; null uses HF_HOME / ~/.cache/huggingface.",
    },
    "device": {
        "type": "string",
        "enum": ["auto", "cuda", "cpu"],
        "default": "auto",
        "description": "auto takes the GPU when torch sees one, else the CPU with a logged warning.",
    },
    "precision": {
        "type": "string",
        "enum": ["fp32", *AUTOCAST_DTYPES, *WEIGHT_DTYPES],
        "default": "bf16",
        "description": (
            "bf16 and fp16 autocast; bf16-true casts weights and activations to bfloat16 (fastest on recent GPUs). "
            "Applies on CUDA, and on the CPU only with device cpu (auto falls back to fp32). Pooling sums in float32 "
            "and vectors are stored as float32 whatever the precision."
        ),
    },
    "batch_size": {
        "type": "integer",
        "minimum": 1,
        "default": 32,
        "description": (
            "Snippets (or chunks) per forward pass on a GPU, gathered across all pieces of a job; a batch that runs "
            "out of memory is split and retried. The CPU runs one clip per pass (bitwise batch-invariant)."
        ),
    },
    "chunk_seconds": {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 30.0,
        "description": "Longer clips are cut into chunks of this length and pooled over all chunks' frames.",
    },
}
KNOWN_FILE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "bytes": {"type": "integer", "minimum": 0, "description": "Size in bytes."},
        "sha256": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "The full SHA-256 (64 hex digits; leading digits alone are refused).",
        },
    },
}
UNPINNED = "Full commit hash to fetch; null until you pin one (the fetch refuses an unpinned entry)."
NONE_RECORDED = (
    "File name -> bytes and full SHA-256 that fetching and loading check; none recorded until a revision is pinned."
)


def encoder_entry(
    name: str,
    description: str,
    model_id: str | None,
    revision: str | None,
    model_class: str,
    model_sample_rate: int | None,
    known_files: dict[str, dict[str, Any]] | None = None,
    revision_note: str = UNPINNED,
    known_files_note: str = NONE_RECORDED,
    nullable_revision: bool = False,
) -> EmbedderDeclaration:
    """One checkpoint of the family: its identity fields' defaults, and the shared settings."""
    identity = {
        "model_id": {
            "type": "string" if model_id else ["string", "null"],
            "default": model_id,
            "description": "Hugging Face model id." + ("" if model_id else " Required unless local_dir is set."),
        },
        "revision": {
            "type": ["string", "null"] if nullable_revision or revision is None else "string",
            "pattern": "^[0-9a-f]{40}$",
            "default": revision,
            "description": revision_note,
        },
        "model_class": {
            "type": "string",
            "enum": [*sorted(MODEL_CLASSES), AUTO_CLASS],
            "default": model_class,
            "description": (
                "The transformers class the checkpoint loads into (no remote code runs); auto: the class "
                "config.json's model_type names."
            ),
        },
        "model_sample_rate": {
            "type": "integer" if model_sample_rate else ["integer", "null"],
            "minimum": 8000,
            "default": model_sample_rate,
            "description": (
                "The model's input rate in Hz (its preprocessor_config.json must agree; null: the rate it says); "
                "other rendered rates are resampled (soxr)."
            ),
        },
        "known_files": {
            "type": "object",
            "additionalProperties": KNOWN_FILE,
            "default": known_files or {},
            "description": known_files_note,
        },
    }
    return EmbedderDeclaration(
        name=name,
        embedder=AudioEncoderEmbedder,
        description=description,
        settings={**identity, **SHARED_SETTINGS},
        gpu=True,
        weights="hub",
        packages=("numpy", "torch", "transformers", "soxr"),
        # Thousands of seconds of audio per second on a GPU, after ~13 s of start-up.
        runtime_minutes=(20, 0.02),
    )


DECLARATIONS = [
    encoder_entry(
        "mert",
        "MERT-v1-95M (24 kHz, 13 x 768) through transformers' HubertModel (see workflow_scripts/embedders/mert.py).",
        "m-a-p/MERT-v1-95M",
        "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
        "HubertModel",
        24000,
        known_files={
            "config.json": {
                "bytes": 1817,
                "sha256": "ea2627c4c7825cd66f3c944b6b966331604c35928174e0100cd4a82829424e32",
            },
            "preprocessor_config.json": {
                "bytes": 211,
                "sha256": "cc5a5e4a5d3b1a758a5ed984b2eaa15bb0522d811d44a9eed82bfca4baa0dc8f",
            },
            "pytorch_model.bin": {
                "bytes": 377552987,
                "sha256": "a2b8b747f72c06e0595aeae41ae5473f4364938c6b39b2c58be38c48e6bd3fcd",
            },
        },
        revision_note="Full commit hash of the model repository, so an upstream change cannot alter results.",
        known_files_note=(
            "File name -> bytes and full SHA-256 that fetching and loading check: the files at the pinned revision, "
            "as public code that pins it records them (tests/data/mert/README.md)."
        ),
    ),
    encoder_entry(
        "mert_330m",
        "MERT-v1-330M (24 kHz, 25 x 1024; pre-norm encoder, group-normalised convolutions).",
        "m-a-p/MERT-v1-330M",
        "0e06c986db0527c0fd1b47181c40f006805e3de0",
        "HubertModel",
        24000,
        known_files={
            "pytorch_model.bin": {"sha256": "0c03774d821a6ad972cb48220b128a10ebea2c790116bd0fd35e5a013f8017f6"}
        },
        revision_note=(
            "The commit public code pins for m-a-p/MERT-v1-330M (it replaces d0726b6f..., found in no public code; "
            "not checked against the hub from this project's machines)."
        ),
        known_files_note=(
            "File name -> bytes and full SHA-256 that fetching and loading check: the weights' published SHA-256 at "
            "the pinned revision (size not known here)."
        ),
    ),
    encoder_entry(
        "mert_v0",
        "MERT-v0-public (16 kHz, 13 x 768; trained on open music only). Rendered audio is resampled.",
        "m-a-p/MERT-v0-public",
        "e8413e398b3180ca488534aea68fd829402044a4",
        "HubertModel",
        16000,
        known_files={
            "config.json": {"bytes": 1798},
            "preprocessor_config.json": {
                "bytes": 212,
                "sha256": "28672bb3f7a0872af91f29edb75b5aeadddaa7a79109ad387d58b754bc9e8f6f",
            },
            "pytorch_model.bin": {
                "bytes": 377552987,
                "sha256": "9b25bde740483579d9895f35d074a949f6593ef48449b6d76e26ee3c0e5e9acb",
            },
        },
        revision_note=(
            "The commit public code pins for m-a-p/MERT-v0-public (not checked against the hub from this project's "
            "machines); null refuses to fetch."
        ),
        nullable_revision=True,
        known_files_note=(
            "File name -> bytes and full SHA-256 that fetching and loading check, at the pinned revision "
            "(config.json: only its size is published; the preprocessor, do_normalize false, is tests/data/mert's copy)."
        ),
    ),
    encoder_entry(
        "music2vec",
        "music2vec-v1 (16 kHz, 13 x 768; data2vec-style BYOL pretraining, not masked prediction).",
        "m-a-p/music2vec-v1",
        None,
        "Data2VecAudioModel",
        16000,
    ),
    encoder_entry(
        "transformers_encoder",
        (
            "Any transformers audio encoder by model id, without remote code: HuBERT, wav2vec2 or Data2VecAudio "
            "(raw waveforms) or AST (log-mel features), every hidden state mean-pooled. Set model_id and a pinned "
            "revision, or local_dir; the class comes from config.json's model_type unless model_class names one."
        ),
        None,
        None,
        AUTO_CLASS,
        None,
    ),
    encoder_entry(
        "hubert_base",
        "HuBERT base trained on LibriSpeech 960 h (16 kHz, 13 x 768), a speech encoder as a contrast.",
        "facebook/hubert-base-ls960",
        None,
        "HubertModel",
        16000,
    ),
]
