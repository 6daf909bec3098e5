"""``basic_pitch``: Spotify's Basic Pitch (ICASSP 2022), an offline learned model, through ONNX.

The ``basic-pitch`` wheel (Apache-2.0, code and weights) ships the trained model as
``saved_models/icassp_2022/nmp.onnx`` (230 kB). It is located through the installed
distribution's files (``importlib.metadata``), never by importing the package:
``basic_pitch/__init__.py`` probes for TensorFlow, CoreML and TFLite, and
``basic_pitch.inference`` imports TensorFlow and librosa. The project installs the wheel
without its dependencies (requirements/no-deps.txt) and runs the file with onnxruntime.

Preprocessing follows ``basic_pitch.inference.run_inference`` of basic-pitch 0.4.0:

1. resample to 22,050 Hz with soxr at ``soxr_hq``, what ``librosa.load(sr=22050)`` does
   there, and fix the length to ``ceil(n * 22050 / rate)`` as librosa does;
2. prepend 15 frames (3,840 samples) of silence, cut windows of 43,844 samples
   (2 s less one hop) every 36,164 samples (30 frames of overlap), the last zero-padded;
3. run the model window by window (its reference batch of one), drop 15 frames at each
   end of each window's 172, join them and keep ``floor(n * 86 / 22050)`` frames.

Layers: the note, onset and contour posteriorgrams (contour folded from 264 bins to 88
semitones, see ``posteriorgram.fold_contour``), each pooled over the snippet (per key: mean
and standard deviation): (3, 176) per snippet. The model file's SHA-256 is the revision
in provenance. onnxruntime runs sequentially on ``threads`` threads (default 1): a
reduction split across a different number of threads may round differently, so the thread
count is one of the settings that determine the vectors (reruns with it are bit-identical).
Nothing here opens a network connection (tests/test_basic_pitch.py runs it with sockets
forbidden and, where the kernel allows, in a namespace without a network).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from workflow_scripts.embedders.base import EmbedderError, FrameEmbedder
from workflow_scripts.embedders.declaration import EmbedderDeclaration, PitchClassView
from workflow_scripts.embedders.posteriorgram import (
    ANNOTATIONS_FPS,
    FFT_HOP,
    FRAME_SECONDS,
    KEYS,
    LAYER_NAMES,
    LOWEST_KEY,
    MODEL_SAMPLE_RATE,
    POOLED_DIM,
    POOLING,
    fold_contour,
    pool_rolls,
)
from workflow_scripts.plumbing.io_utils import sha256_file

DISTRIBUTION = "basic-pitch"
MODEL_FILE_IN_PACKAGE = "basic_pitch/saved_models/icassp_2022/nmp.onnx"
WINDOW_SAMPLES = MODEL_SAMPLE_RATE * 2 - FFT_HOP  # AUDIO_N_SAMPLES
OVERLAP_FRAMES = 30
OVERLAP_SAMPLES = OVERLAP_FRAMES * FFT_HOP
HOP_SAMPLES = WINDOW_SAMPLES - OVERLAP_SAMPLES
INPUT_NAME = "serving_default_input_2:0"
# basic_pitch.inference.Model.predict's mapping of the ONNX outputs.
OUTPUT_NAMES = {
    "note": "StatefulPartitionedCall:1",
    "onset": "StatefulPartitionedCall:2",
    "contour": "StatefulPartitionedCall:0",
}
RESAMPLER_QUALITY = "soxr_hq"
INSTALL_HINT = (
    "Install the wheel without its dependencies (they include TensorFlow, which the project does not use): "
    "`.venv/bin/python -m pip install --no-deps --require-hashes -r requirements/no-deps.txt` "
    "(scripts/bootstrap.sh does this), or point embedder_settings.basic_pitch.model_file at an nmp.onnx."
)


def packaged_model_file() -> Path:
    """nmp.onnx inside the installed basic-pitch distribution, found through its file list."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise EmbedderError(
            f"the basic_pitch embedder needs the {DISTRIBUTION} package, which is not installed. {INSTALL_HINT}"
        ) from None
    listed = [entry for entry in distribution.files or [] if entry.as_posix() == MODEL_FILE_IN_PACKAGE]
    path = Path(distribution.locate_file(listed[0] if listed else MODEL_FILE_IN_PACKAGE))
    if not path.is_file():
        raise EmbedderError(
            f"{DISTRIBUTION} {distribution.version} is installed but has no {MODEL_FILE_IN_PACKAGE}. {INSTALL_HINT}"
        )
    return path


def resample_to_model_rate(clip: np.ndarray, sample_rate: int) -> np.ndarray:
    """``librosa.load(sr=22050)``'s resampling: soxr HQ, length fixed to ceil(n * 22050 / rate)."""
    if sample_rate == MODEL_SAMPLE_RATE:
        return np.asarray(clip, np.float32)
    import soxr

    resampled = soxr.resample(np.asarray(clip, np.float32), sample_rate, MODEL_SAMPLE_RATE, quality=RESAMPLER_QUALITY)
    target = int(np.ceil(clip.size * MODEL_SAMPLE_RATE / sample_rate))
    if resampled.size < target:
        return np.pad(resampled, (0, target - resampled.size))
    return resampled[:target]


def model_windows(audio: np.ndarray) -> np.ndarray:
    """(windows, 43844, 1) float32: Basic Pitch's overlapping windows of 22,050 Hz audio."""
    padded = np.concatenate([np.zeros(OVERLAP_SAMPLES // 2, np.float32), audio.astype(np.float32)])
    starts = range(0, padded.size, HOP_SAMPLES)
    windows = np.zeros((len(starts), WINDOW_SAMPLES, 1), np.float32)  # the last window's tail stays zero
    for row, start in enumerate(starts):
        window = padded[start : start + WINDOW_SAMPLES]
        windows[row, : window.size, 0] = window
    return windows


def unwrap(outputs: list[np.ndarray], audio_samples: int) -> np.ndarray:
    """Window outputs (172, bins) each to one (frames, bins) matrix, as ``unwrap_output`` does."""
    half = OVERLAP_FRAMES // 2
    joined = np.concatenate([output[half:-half] for output in outputs])
    return joined[: int(np.floor(audio_samples * (ANNOTATIONS_FPS / MODEL_SAMPLE_RATE)))]


class BasicPitchEmbedder(FrameEmbedder):
    name = "basic_pitch"
    # Clip by clip: each clip's windows go through the model as Basic Pitch runs them, so a
    # piece's vectors never depend on what else shares its job; batching buys nothing on a
    # CPU (86 s of audio per second and thread, window by window or 16 at a time).
    batch_size = 1
    frame_rate, frame_layers, frame_dim = 1 / FRAME_SECONDS, len(LAYER_NAMES), KEYS

    def __init__(self, settings: dict[str, Any]):
        self.sample_rate = int(settings["sample_rate"])
        self.threads = int(settings["threads"])
        self.model_file = (
            Path(settings["model_file"]).expanduser() if settings.get("model_file") else packaged_model_file()
        )
        if not self.model_file.is_file():
            raise EmbedderError(
                f"embedder_settings.basic_pitch.model_file '{self.model_file}' does not exist. {INSTALL_HINT}"
            )
        self.model_sha256 = sha256_file(self.model_file)
        expected = settings.get("model_sha256")
        if expected and expected != self.model_sha256:
            raise EmbedderError(
                f"{self.model_file} has SHA-256 {self.model_sha256}, not the {expected} that "
                "embedder_settings.basic_pitch.model_sha256 records (basic-pitch 0.4.0's nmp.onnx). Install "
                "requirements/no-deps.txt, or set model_sha256 to the new file's checksum if the change is intended."
            )
        self.session = self._open_session()

    def _open_session(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: the job log is for the stage
        session = onnxruntime.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        outputs = {output.name for output in session.get_outputs()}
        if [i.name for i in session.get_inputs()] != [INPUT_NAME] or not set(OUTPUT_NAMES.values()) <= outputs:
            raise EmbedderError(
                f"{self.model_file} is not Basic Pitch's nmp.onnx: it takes {[i.name for i in session.get_inputs()]} "
                f"and gives {sorted(outputs)}, not {INPUT_NAME} -> {sorted(OUTPUT_NAMES.values())}."
            )
        return session

    def describe(self) -> dict[str, Any]:
        import onnxruntime

        return {
            "name": self.name,
            "model_id": "spotify/basic-pitch icassp_2022 nmp.onnx",
            "revision": self.model_sha256,
            "layers": len(LAYER_NAMES),
            "dim": POOLED_DIM,
            "sample_rate": self.sample_rate,
            "settings": {
                "layer_names": list(LAYER_NAMES),
                "contour": f"264 bins folded to {KEYS} semitones (max of the 3 bins around each key)",
                "pooling": [f"{statistic} over frames, per key" for statistic in POOLING],
                "model_sample_rate": MODEL_SAMPLE_RATE,
                "resampling": "none"
                if self.sample_rate == MODEL_SAMPLE_RATE
                else f"soxr {RESAMPLER_QUALITY} {self.sample_rate} -> {MODEL_SAMPLE_RATE} Hz",
                "window_samples": WINDOW_SAMPLES,
                "overlap_frames": OVERLAP_FRAMES,
                "threads": self.threads,
                "runtime": f"onnxruntime {onnxruntime.__version__}, CPUExecutionProvider, sequential",
            },
            "model_files": {
                self.model_file.name: {"bytes": self.model_file.stat().st_size, "sha256": self.model_sha256}
            },
        }

    def posteriorgrams(self, clip: np.ndarray) -> dict[str, np.ndarray]:
        """The unwrapped note (frames, 88), onset (frames, 88) and contour (frames, 264) of one clip."""
        audio = resample_to_model_rate(clip, self.sample_rate)
        outputs: dict[str, list[np.ndarray]] = {layer: [] for layer in OUTPUT_NAMES}
        names = list(OUTPUT_NAMES.values())
        for window in model_windows(audio):
            for layer, value in zip(OUTPUT_NAMES, self.session.run(names, {INPUT_NAME: window[None]})):
                outputs[layer].append(value[0])
        return {layer: unwrap(values, audio.size) for layer, values in outputs.items()}

    def frames(self, clip: np.ndarray) -> np.ndarray:
        """(3, frames, 88): the note, onset and folded contour posteriorgrams."""
        grams = self.posteriorgrams(clip)
        return np.stack([grams["note"], grams["onset"], fold_contour(grams["contour"])])

    def pool_frames(self, frames: np.ndarray) -> np.ndarray:
        return pool_rolls(frames)


DECLARATIONS = [
    EmbedderDeclaration(
        name="basic_pitch",
        embedder=BasicPitchEmbedder,
        description=(
            "Basic Pitch's note, onset and contour posteriorgrams, pooled (see workflow_scripts/embedders/basic_pitch.py)."
        ),
        settings={
            "threads": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": (
                    "onnxruntime threads per embed job (jobs run in parallel, one core each). Part of what determines "
                    "the vectors: the same count gives bit-identical reruns."
                ),
            },
            "model_file": {
                "type": ["string", "null"],
                "default": None,
                "description": "An nmp.onnx to use instead of the one inside the installed basic-pitch wheel.",
            },
            "model_sha256": {
                "type": ["string", "null"],
                "pattern": "^[0-9a-f]{64}$",
                "default": "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec",
                "description": (
                    "The model file's expected SHA-256 (basic-pitch 0.4.0's nmp.onnx); another file is refused. "
                    "null checks nothing."
                ),
            },
        },
        # The model file ships inside the basic-pitch wheel (installed without its dependencies).
        weights="wheel",
        packages=("numpy", "onnxruntime", "soxr", DISTRIBUTION),
        runtime_minutes=(15, 2),  # about 50 s of audio per second on one core
        pitch_classes=PitchClassView(layer=LAYER_NAMES.index("note"), lowest_key=LOWEST_KEY),
    )
]
