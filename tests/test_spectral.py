import numpy as np
import pytest

from workflow_scripts.embedders import EmbedderError, build_embedder

SETTINGS = {"sample_rate": 24000, "n_fft": 2048, "hop_length": 480, "n_mels": 64, "fmin": 30.0, "fmax": 8000.0}


def tone(frequency, seconds=1.0, rate=24000):
    time = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def test_shape_and_description():
    embedder = build_embedder("spectral", SETTINGS)
    vectors = embedder.embed([tone(440), tone(261.63, 0.5)])
    assert vectors.shape == (2, 1, 216) and vectors.dtype == np.float32
    description = embedder.describe()
    assert description["layers"] == 1 and description["dim"] == 216


def test_chroma_of_a_pure_tone_peaks_at_its_pitch_class():
    embedder = build_embedder("spectral", SETTINGS)
    chroma_mean = embedder.embed([tone(440.0)])[0, 0, 192:204]
    assert int(np.argmax(chroma_mean)) == 9  # A, counting from C


def test_deterministic_and_short_clips_are_padded():
    embedder = build_embedder("spectral", SETTINGS)
    clip = tone(330, 0.05)
    assert np.array_equal(embedder.embed([clip]), embedder.embed([clip]))
    assert np.isfinite(embedder.embed([np.zeros(100, np.float32)])).all()


def test_fmax_above_nyquist_is_refused():
    with pytest.raises(EmbedderError, match="Nyquist"):
        build_embedder("spectral", {**SETTINGS, "fmax": 13000.0})


def test_unknown_embedder_lists_the_known_ones():
    with pytest.raises(EmbedderError, match="mert"):
        build_embedder("wav2vec", SETTINGS)


def test_the_vectorised_spectrogram_equals_transformers_bitwise():
    """The frames are transformed in one call instead of transformers' loop over frames; the
    power spectrum, and so every vector, must not change by a bit."""
    from transformers import audio_utils

    embedder = build_embedder("spectral", SETTINGS)
    rng = np.random.default_rng(0)
    for clip in (tone(440, 1.3) + 0.01 * rng.standard_normal(31200).astype(np.float32), tone(97, 0.2)):
        reference = audio_utils.spectrogram(
            clip, audio_utils.window_function(2048, "hann"), frame_length=2048, hop_length=480, power=2.0
        )
        assert np.array_equal(embedder._power_spectrogram(clip), reference)
