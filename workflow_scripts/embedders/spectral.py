"""``spectral``: an offline embedder that needs no model weights.

Per snippet, from one short-time Fourier transform (Hann window of ``n_fft`` samples,
hop ``hop_length``, centred with reflection padding; window and filter banks from
transformers' audio utilities, the transform itself vectorised over frames, bitwise equal
to ``transformers.audio_utils.spectrogram`` but without its loop over frames):

- log-mel spectrogram (``n_mels`` bands, HTK mel scale, dB): mean and standard
  deviation over time, and the mean absolute frame-to-frame difference (how much the
  spectrum moves: a crude onset/rhythm statistic);
- chromagram (12 pitch classes, each frame scaled to a maximum of 1): mean and
  standard deviation over time.

The vector is their concatenation: 3 * n_mels + 24 values (216 with the defaults),
one layer. It describes timbre and harmony, not melody order, so it is a baseline that
a learned model should beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from workflow_scripts.embedders.base import EmbedderError, FrameEmbedder
from workflow_scripts.embedders.declaration import EmbedderDeclaration, PitchClassView

POWER_FLOOR = 1e-10


class SpectralEmbedder(FrameEmbedder):
    name = "spectral"
    # Clip by clip: nothing is gained by batching it, and each piece is finished (and
    # cached) as soon as its own snippets are, whatever else shares the job.
    batch_size = 1

    def __init__(self, settings: dict[str, Any]):
        from transformers import audio_utils

        self.sample_rate = int(settings["sample_rate"])
        self.n_fft = int(settings["n_fft"])
        self.hop_length = int(settings["hop_length"])
        self.n_mels = int(settings["n_mels"])
        # Centred frames: frame f is centred on sample f * hop_length.
        self.frame_rate = self.sample_rate / self.hop_length
        self.frame_layers, self.frame_dim = 1, self.n_mels + 12
        self.fmin = float(settings["fmin"])
        self.fmax = float(settings["fmax"])
        if self.fmax > self.sample_rate / 2:
            raise EmbedderError(
                f"embedder_settings.spectral.fmax ({self.fmax}) is above the Nyquist frequency "
                f"({self.sample_rate / 2}); lower it."
            )
        frequency_bins = self.n_fft // 2 + 1
        self._window_float64 = audio_utils.window_function(self.n_fft, "hann").astype(np.float64)
        # The banks are rounded to float32 (as the vectors always were) and then held as
        # float64, the type the power spectrum is in, so no product converts them per clip.
        mel_filters = audio_utils.mel_filter_bank(
            num_frequency_bins=frequency_bins,
            num_mel_filters=self.n_mels,
            min_frequency=self.fmin,
            max_frequency=self.fmax,
            sampling_rate=self.sample_rate,
            mel_scale="htk",
        ).astype(np.float32)
        self._mel_rows = np.ascontiguousarray(mel_filters.T, dtype=np.float64)  # (n_mels, frequency bins)
        # Like librosa, the chroma bank takes the FFT size and returns (12, n_fft // 2 + 1).
        self._chroma_rows = (
            audio_utils.chroma_filter_bank(num_frequency_bins=self.n_fft, num_chroma=12, sampling_rate=self.sample_rate)
            .astype(np.float32)
            .astype(np.float64)
        )

    @property
    def dim(self) -> int:
        return 3 * self.n_mels + 24

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_id": "spectral-logmel-chroma-stats",
            "revision": "1",
            "layers": 1,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "settings": {
                "n_fft": self.n_fft,
                "hop_length": self.hop_length,
                "n_mels": self.n_mels,
                "fmin": self.fmin,
                "fmax": self.fmax,
            },
        }

    def _power_spectrogram(self, clip: np.ndarray) -> np.ndarray:
        """|STFT|^2 as transformers' ``spectrogram`` computes it (float64 transform, complex64
        values, float64 power), all frames in one call."""
        half = self.n_fft // 2
        padded = np.pad(clip.astype(np.float32), (half, half), mode="reflect").astype(np.float64)
        frames = sliding_window_view(padded, self.n_fft)[:: self.hop_length] * self._window_float64
        spectrum = np.fft.rfft(frames, axis=-1).astype(np.complex64)
        return (np.abs(spectrum, dtype=np.float64) ** 2).T

    def frames(self, clip: np.ndarray) -> np.ndarray:
        """(1, frames, n_mels + 12): each frame's log-mel bands, then its 12 chroma values."""
        if clip.size < self.n_fft:
            clip = np.pad(clip, (0, self.n_fft - clip.size))
        power = self._power_spectrogram(clip)  # (frequency bins, frames)
        log_mel = 10.0 * np.log10(np.maximum(self._mel_rows @ power, POWER_FLOOR))
        chroma = self._chroma_rows @ power
        chroma = chroma / np.maximum(chroma.max(axis=0, keepdims=True), POWER_FLOOR)
        return np.concatenate([log_mel, chroma]).T[None]

    def pool_frames(self, frames: np.ndarray) -> np.ndarray:
        # Back to (bands, frames) contiguous rows, the layout the statistics were always taken in,
        # so the vectors stay bitwise what they were before frames were exposed.
        log_mel = np.ascontiguousarray(frames[0, :, : self.n_mels].T)
        chroma = np.ascontiguousarray(frames[0, :, self.n_mels :].T)
        flux = np.abs(np.diff(log_mel, axis=1)).mean(axis=1) if log_mel.shape[1] > 1 else np.zeros(self.n_mels)
        return np.concatenate(
            [log_mel.mean(axis=1), log_mel.std(axis=1), flux, chroma.mean(axis=1), chroma.std(axis=1)]
        ).astype(np.float32)[None]


DECLARATIONS = [
    EmbedderDeclaration(
        name="spectral",
        embedder=SpectralEmbedder,
        description="Log-mel and chroma statistics (see workflow_scripts/embedders/spectral.py).",
        settings={
            "n_fft": {
                "type": "integer",
                "minimum": 64,
                "default": 2048,
                "description": "FFT and window size in samples.",
            },
            "hop_length": {
                "type": "integer",
                "minimum": 1,
                "default": 480,
                "description": "Samples between frames (20 ms at 24 kHz).",
            },
            "n_mels": {"type": "integer", "minimum": 8, "default": 64, "description": "Mel bands."},
            "fmin": {"type": "number", "minimum": 0, "default": 30.0, "description": "Lowest mel frequency in Hz."},
            "fmax": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 8000.0,
                "description": "Highest mel frequency in Hz.",
            },
        },
        # Its filter banks and window come from transformers' audio utilities.
        packages=("numpy", "transformers"),
        runtime_minutes=(15, 2),  # about a piece per second on one core; generous
        pitch_classes=PitchClassView(layer=0, last_dims=12),
    )
]
