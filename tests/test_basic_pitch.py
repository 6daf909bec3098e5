"""``basic_pitch``: Basic Pitch's ONNX model from the installed wheel, offline, with its own preprocessing."""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from workflow_runner import REPO_ROOT

from workflow_scripts.embedders import EmbedderError, build_embedder
from workflow_scripts.embedders import basic_pitch as module
from workflow_scripts.embedders.posteriorgram import KEYS, fold_contour
from workflow_scripts.music.segment import NoteEvent
from workflow_scripts.music.synth import FluidSynthRenderer, resolve_soundfont

RATE = 24000
C_MAJOR = (60, 64, 67)
# basic-pitch 0.4.0's nmp.onnx, as config.yaml records it.
SETTINGS = {
    "sample_rate": RATE,
    "threads": 1,
    "model_file": None,
    "model_sha256": "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec",
}


def rendered_chord(pitches=C_MAJOR, seconds: float = 3.0, program: int = 0) -> np.ndarray:
    events = [NoteEvent(0.2, seconds - 0.3, pitch, voice) for voice, pitch in enumerate(pitches)]
    with FluidSynthRenderer(resolve_soundfont(None), RATE, 0.3) as renderer:
        return renderer.render(events, seconds, [program], 90)


@pytest.fixture(scope="module")
def embedder():
    return build_embedder("basic_pitch", SETTINGS)


@pytest.mark.parametrize("program", [0, 19])  # piano, church organ
def test_it_finds_the_pitches_of_a_rendered_chord(embedder, program):
    vectors = embedder.embed([rendered_chord(program=program)])
    assert vectors.shape == (1, 3, 2 * KEYS) and vectors.dtype == np.float32
    for layer in (0, 2):  # note, contour: the chord's three keys have the largest mean posterior
        strongest = np.argsort(vectors[0, layer, :KEYS])[::-1][:3] + 21
        assert sorted(strongest.tolist()) == list(C_MAJOR), (program, layer, strongest)


def reference_functions():
    """``window_audio_file`` and ``unwrap_output`` from the installed basic_pitch/inference.py,
    compiled from its source text (importing the module would import TensorFlow and librosa)."""
    source = importlib.metadata.distribution("basic-pitch").locate_file("basic_pitch/inference.py").read_text()
    wanted = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name in ("window_audio_file", "unwrap_output")
    ]
    constants = {"AUDIO_SAMPLE_RATE": 22050, "AUDIO_N_SAMPLES": 22050 * 2 - 256, "ANNOTATIONS_FPS": 86}
    namespace = {"np": np, "npt": __import__("numpy.typing").typing, **constants}
    code = compile("from typing import *\n" + "\n".join(ast.unparse(node) for node in wanted), "inference.py", "exec")
    exec(code, namespace)  # noqa: S102 - the package's own two functions, to compare against
    return namespace["window_audio_file"], namespace["unwrap_output"]


@pytest.mark.parametrize("samples", [1000, 43844, 36164 * 3 + 17, 220500])
def test_windows_and_unwrapping_are_basic_pitchs_own(samples):
    window_audio_file, unwrap_output = reference_functions()
    audio = np.random.default_rng(samples).standard_normal(samples).astype(np.float32)
    padded = np.concatenate([np.zeros(module.OVERLAP_SAMPLES // 2, np.float32), audio])
    theirs = np.stack([window for window, _ in window_audio_file(padded, module.HOP_SAMPLES)])
    np.testing.assert_array_equal(module.model_windows(audio), theirs)
    outputs = [np.random.default_rng(index).random((172, 88)).astype(np.float32) for index in range(len(theirs))]
    np.testing.assert_array_equal(module.unwrap(outputs, samples), unwrap_output(np.stack(outputs), samples, 30))


def test_resampling_is_librosas_soxr_hq_with_its_length():
    clip = np.random.default_rng(0).standard_normal(RATE * 2 + 7).astype(np.float32)
    resampled = module.resample_to_model_rate(clip, RATE)
    assert resampled.size == int(np.ceil(clip.size * 22050 / RATE))
    assert module.resample_to_model_rate(clip[:22050], 22050).size == 22050  # at the model's rate: untouched


def test_contour_folds_the_three_bins_around_each_key():
    contour = np.zeros((2, 264), np.float32)
    contour[0, 3 * 39] = 0.9  # centre bin of MIDI 60
    contour[1, 3 * 39 + 1] = 0.4  # a third of a semitone sharp: still MIDI 60
    contour[1, 3 * 40 - 1] = 0.7  # a third of a semitone flat of MIDI 61
    folded = fold_contour(contour)
    assert folded.shape == (2, 88)
    assert (
        folded[0, 39] == pytest.approx(0.9)
        and folded[1, 39] == pytest.approx(0.4)
        and folded[1, 40] == pytest.approx(0.7)
    )
    assert folded.sum() == pytest.approx(2.0)


def test_reruns_are_bit_identical_and_describe_the_model_file(embedder):
    clip = rendered_chord((55, 62, 71), seconds=5.0)
    again = build_embedder("basic_pitch", SETTINGS)
    assert np.array_equal(embedder.embed([clip]), again.embed([clip]))
    description = embedder.describe()
    assert description["revision"] == SETTINGS["model_sha256"] == description["model_files"]["nmp.onnx"]["sha256"]
    assert description["settings"]["threads"] == 1 and "soxr" in description["settings"]["resampling"]


def test_a_different_model_file_is_refused(tmp_path):
    other = tmp_path / "nmp.onnx"
    shutil.copy(module.packaged_model_file(), other)
    other.write_bytes(other.read_bytes() + b"\0")
    with pytest.raises(EmbedderError, match="model_sha256"):
        build_embedder("basic_pitch", {**SETTINGS, "model_file": str(other)})


def test_a_missing_wheel_says_how_to_install_it_without_tensorflow(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(module.importlib.metadata, "distribution", not_installed)
    with pytest.raises(EmbedderError, match=r"--no-deps --require-hashes -r requirements/no-deps.txt"):
        build_embedder("basic_pitch", SETTINGS)


def test_nothing_of_the_basic_pitch_package_or_tensorflow_is_imported(embedder):
    embedder.embed([rendered_chord(seconds=1.0)])
    assert not [name for name in sys.modules if name.split(".")[0] in ("basic_pitch", "tensorflow", "librosa")]


def test_no_socket_is_opened(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network call: {args}")

    for name in ("connect", "connect_ex", "bind", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    vectors = build_embedder("basic_pitch", SETTINGS).embed([rendered_chord(seconds=1.0)])
    assert np.isfinite(vectors).all()


def test_it_runs_in_a_namespace_without_any_network():
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False).returncode != 0
    ):
        pytest.skip("this kernel or container does not allow an unprivileged network namespace (unshare -rn)")
    script = textwrap.dedent(
        f"""
        import numpy as np, socket
        try:
            socket.create_connection(("pypi.org", 443), timeout=2)
            raise SystemExit("the namespace has a network")
        except OSError:
            pass
        from workflow_scripts.embedders import build_embedder
        clip = (0.1 * np.sin(2 * np.pi * 440 * np.arange({RATE}) / {RATE})).astype(np.float32)
        vectors = build_embedder("basic_pitch", {SETTINGS!r}).embed([clip])
        print("key", int(np.argmax(vectors[0, 0, :88])) + 21)
        """
    )
    completed = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "key 69" in completed.stdout  # A4 = 440 Hz
