"""FluidSynth through pyfluidsynth: note events to mono float audio.

pyfluidsynth only wraps FluidSynth's 16-bit writer; the float writer
(``fluid_synth_write_float``) is called through the same loaded library so the audio
is not quantised before it is embedded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow_scripts.music.segment import NoteEvent

DRUM_CHANNEL = 9
STANDARD_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


class SynthError(RuntimeError):
    """FluidSynth or the SoundFont is missing or unusable; the message says how to fix it."""


def resolve_soundfont(configured: str | None) -> Path:
    """The SoundFont to use: the configured file, else the first standard location that exists."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise SynthError(
                f"render.soundfont '{configured}' does not exist. Point it at a .sf2 file, "
                "or leave it empty to use Debian's fluid-soundfont-gm."
            )
        return path
    for candidate in STANDARD_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SynthError(
        "no SoundFont found (looked in " + ", ".join(STANDARD_SOUNDFONTS) + "). "
        "Install one with `apt-get install fluid-soundfont-gm`, or set render.soundfont."
    )


def _load_pyfluidsynth():
    try:
        import fluidsynth
    except ImportError as error:
        raise SynthError(
            f"FluidSynth cannot be loaded ({error}). Install the library with "
            "`apt-get install libfluidsynth3` (Debian/Ubuntu) or `brew install fluid-synth` (macOS), "
            "and the bindings with `pip install pyfluidsynth`."
        ) from error
    return fluidsynth


def channel_for_voice(voice: int) -> int:
    """MIDI channel for a voice, skipping the General MIDI drum channel."""
    channel = voice % 15
    return channel + 1 if channel >= DRUM_CHANNEL else channel


class FluidSynthRenderer:
    """Renders each snippet on a fresh synthesiser, with one SoundFont loaded once and shared.

    A FluidSynth instance that has played notes does not return to its initial state
    after a reset (its next output differs by up to a few percent of full scale), so a
    reused synthesiser would make a snippet's audio depend on what was rendered before
    it. Loading the SoundFont into each new instance (``sfload``) would parse the file's
    presets every time: about 0.1 s a snippet for FluidR3_GM, half a render job's time.
    So the first instance, kept alive here, owns the loaded SoundFont, and each snippet's
    instance borrows it (``fluid_synth_add_sfont``) and gives it back before it is deleted
    (``fluid_synth_remove_sfont``, which leaves it unfreed). The audio is bit-identical to
    a render whose instance loaded the file itself (tests/test_synth.py). Reverb and chorus
    are off: their tails are state too.
    """

    def __init__(self, soundfont: Path, sample_rate: int, gain: float):
        self._fluidsynth = _load_pyfluidsynth()
        self.soundfont = soundfont
        self.sample_rate = sample_rate
        self.gain = gain
        self._owner = self._new_synth()
        soundfont_id = self._owner.sfload(str(self.soundfont))
        if soundfont_id == -1:
            self._owner.delete()
            raise SynthError(f"FluidSynth could not load the SoundFont {self.soundfont}; is it a valid .sf2 file?")
        self._sfont = _soundfont_api().get_by_id(self._owner.synth, soundfont_id)

    def _new_synth(self):
        synth = self._fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate))
        synth.setting("synth.reverb.active", 0)
        synth.setting("synth.chorus.active", 0)
        return synth

    def close(self) -> None:
        self._owner.delete()

    def __enter__(self) -> FluidSynthRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def render(
        self,
        events: Sequence[NoteEvent],
        duration_s: float,
        programs: Sequence[int],
        velocity: int,
        transpose: int = 0,
    ) -> np.ndarray:
        """Mono float32 audio of exactly ``round(duration_s * sample_rate)`` samples."""
        api = _soundfont_api()
        synth = self._new_synth()
        soundfont_id = api.add(synth.synth, self._sfont)
        try:
            if soundfont_id == -1:
                raise SynthError(f"FluidSynth could not share the loaded SoundFont {self.soundfont}")
            return _render_events(
                synth, soundfont_id, self.sample_rate, events, duration_s, programs, velocity, transpose
            )
        finally:
            with _warnings_muted(api):  # removing it resets every channel's preset, one warning each
                api.remove(synth.synth, self._sfont)
            synth.delete()


@dataclass(frozen=True)
class _SoundFontApi:
    get_by_id: Callable
    add: Callable
    remove: Callable
    set_log_function: Callable


@functools.cache
def _soundfont_api() -> _SoundFontApi:
    """FluidSynth's SoundFont-stack calls that pyfluidsynth does not wrap."""
    import fluidsynth

    library = fluidsynth._fl
    get_by_id = library.fluid_synth_get_sfont_by_id
    get_by_id.argtypes, get_by_id.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_void_p
    add = library.fluid_synth_add_sfont
    add.argtypes, add.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
    remove = library.fluid_synth_remove_sfont
    remove.argtypes, remove.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
    set_log_function = library.fluid_set_log_function
    set_log_function.argtypes, set_log_function.restype = (
        [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
        ctypes.c_void_p,
    )
    return _SoundFontApi(get_by_id, add, remove, set_log_function)


FLUID_WARN = 2  # fluid_log_level


@contextlib.contextmanager
def _warnings_muted(api: _SoundFontApi):
    previous = api.set_log_function(FLUID_WARN, None, None)
    try:
        yield
    finally:
        api.set_log_function(FLUID_WARN, previous, None)


@functools.cache
def _float_writer():
    import fluidsynth

    write_float = fluidsynth._fl.fluid_synth_write_float
    write_float.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    write_float.restype = ctypes.c_int
    return write_float


def _render_into(synth, mono: np.ndarray, start: int, stop: int) -> None:
    frames = stop - start
    if frames <= 0:
        return
    left = np.zeros(frames, dtype=np.float32)
    right = np.zeros(frames, dtype=np.float32)
    status = _float_writer()(synth.synth, frames, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
    if status != 0:
        raise SynthError("fluid_synth_write_float failed")
    mono[start:stop] = 0.5 * (left + right)


def played_notes(events: Sequence[NoteEvent], transpose: int) -> list[tuple[NoteEvent, int]]:
    """The events the synthesiser sounds, each with the MIDI key it plays: transposed, and
    only those whose key stays on the MIDI keyboard (0-127). The render stage records these
    as the snippet's notes, so the score-side embedder sees what was played, not what was written."""
    played = []
    for event in events:
        key = event.key + transpose
        if 0 <= key <= 127:
            played.append((event, key))
    return played


def _render_events(synth, soundfont_id, sample_rate, events, duration_s, programs, velocity, transpose) -> np.ndarray:
    total = int(round(duration_s * sample_rate))
    voices = max((event.voice for event in events), default=0) + 1
    for voice in range(voices):
        synth.program_select(channel_for_voice(voice), soundfont_id, 0, programs[voice % len(programs)])
    # Note-offs sort before note-ons at the same instant so a repeated note restarts.
    timeline = []
    for event, key in played_notes(events, transpose):
        channel = channel_for_voice(event.voice)
        timeline.append((int(round(event.onset_s * sample_rate)), 1, channel, key))
        timeline.append((int(round(event.offset_s * sample_rate)), 0, channel, key))
    timeline.sort()
    mono = np.zeros(total, dtype=np.float32)
    cursor = 0
    for sample, is_on, channel, key in timeline:
        sample = min(sample, total)
        _render_into(synth, mono, cursor, sample)
        cursor = max(cursor, sample)
        if is_on:
            synth.noteon(channel, key, velocity)
        else:
            synth.noteoff(channel, key)
    _render_into(synth, mono, cursor, total)
    return mono
