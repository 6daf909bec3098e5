import numpy as np
import pytest

from workflow_scripts.music.segment import NoteEvent
from workflow_scripts.music.synth import FluidSynthRenderer, SynthError, channel_for_voice, resolve_soundfont

CHORD = [NoteEvent(0.0, 0.5, 60, 0), NoteEvent(0.0, 0.5, 64, 1), NoteEvent(0.5, 1.0, 67, 2)]


@pytest.fixture(scope="module")
def renderer():
    with FluidSynthRenderer(resolve_soundfont(None), 24000, 0.3) as synth:
        yield synth


def test_length_and_silence(renderer):
    audio = renderer.render(CHORD, 1.25, [0], 90)
    assert audio.dtype == np.float32 and audio.shape == (30000,)
    assert np.abs(audio[:12000]).max() > 0.01
    assert not np.any(renderer.render([], 0.5, [0], 90))


def test_a_snippet_sounds_the_same_whatever_was_rendered_before(renderer):
    first = renderer.render(CHORD, 1.0, [0], 90)
    renderer.render([NoteEvent(0.0, 0.7, 50, 0)], 0.77, [19], 40)
    assert np.array_equal(first, renderer.render(CHORD, 1.0, [0], 90))


def test_the_shared_soundfont_sounds_bit_for_bit_like_one_loaded_for_the_snippet(renderer, capfd):
    import fluidsynth

    from workflow_scripts.music.synth import _render_events

    events = [*CHORD, NoteEvent(0.9, 1.6, 48, 3), NoteEvent(1.1, 1.4, 72, 0)]
    for programs in ([0], [19], [40, 41, 42, 43]):
        synth = fluidsynth.Synth(gain=0.3, samplerate=24000.0)
        synth.setting("synth.reverb.active", 0)
        synth.setting("synth.chorus.active", 0)
        try:
            own = _render_events(synth, synth.sfload(str(renderer.soundfont)), 24000, events, 1.7, programs, 90, 0)
        finally:
            synth.delete()
        assert np.array_equal(own, renderer.render(events, 1.7, programs, 90))
    assert "No preset found" not in capfd.readouterr().err  # handing the SoundFont back is silent


def test_programs_and_transposition_change_the_sound(renderer):
    piano = renderer.render(CHORD, 1.0, [0], 90)
    assert not np.array_equal(piano, renderer.render(CHORD, 1.0, [19], 90))
    assert not np.array_equal(piano, renderer.render(CHORD, 1.0, [0], 90, transpose=2))


def test_drum_channel_is_never_used():
    assert 9 not in {channel_for_voice(voice) for voice in range(40)}


def test_missing_soundfont_says_how_to_fix(tmp_path):
    with pytest.raises(SynthError, match="does not exist"):
        resolve_soundfont(str(tmp_path / "missing.sf2"))


def test_no_soundfont_installed_names_the_package(monkeypatch):
    monkeypatch.setattr("workflow_scripts.music.synth.STANDARD_SOUNDFONTS", ("/nonexistent/a.sf2",))
    with pytest.raises(SynthError, match="fluid-soundfont-gm"):
        resolve_soundfont(None)


def test_missing_fluidsynth_library_says_how_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_fluidsynth(name, *args, **kwargs):
        if name == "fluidsynth":
            raise ImportError("Couldn't find the FluidSynth library.")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fluidsynth)
    with pytest.raises(SynthError, match="apt-get install libfluidsynth3"):
        FluidSynthRenderer(resolve_soundfont(None), 24000, 0.3)
