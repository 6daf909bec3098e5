"""Scores to timed note events, and measure windows to snippets.

The score is read once; snippets are windows of whole measures. Timing uses one fixed
tempo (config ``render.tempo_qpm``) so that every piece is played the same way and
the same score always gives the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow_scripts.music.tune_books import abc_tune_text


class ScoreError(ValueError):
    """A score that cannot give snippets; the message says why, and the piece is excluded."""


@dataclass(frozen=True)
class NoteEvent:
    onset_s: float
    offset_s: float
    key: int
    voice: int


@dataclass(frozen=True)
class SnippetWindow:
    index: int
    first_measure: int  # index into the piece's measure list, inclusive
    stop_measure: int  # exclusive
    first_measure_number: int  # as printed in the score
    last_measure_number: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ParsedScore:
    title: str
    key: str
    parts: int
    measure_starts_s: np.ndarray  # start of each measure; one extra entry: the piece's end
    measure_numbers: list[int]
    events: list[NoteEvent]
    voice_pitches: list[list[int]]  # per part, the highest pitch of each note or chord in time order
    # Notes and chords without a pitch (unpitched percussion, an empty chord): skipped, since
    # a General MIDI melodic program cannot play them; counted so the catalog can say so.
    unpitched_skipped: int = 0

    @property
    def measures(self) -> int:
        return len(self.measure_numbers)

    @property
    def duration_s(self) -> float:
        return float(self.measure_starts_s[-1])


def measure_windows(measures: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Windows of exactly ``window`` measures every ``hop`` measures.

    A tail shorter than a window is dropped rather than padded, so every snippet of a
    run has the same musical length.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window ({window}) and hop ({hop}) must both be at least 1 measure")
    return [(start, start + window) for start in range(0, measures - window + 1, hop)]


def snippet_windows(score: ParsedScore, window: int, hop: int) -> list[SnippetWindow]:
    windows = []
    for index, (first, stop) in enumerate(measure_windows(score.measures, window, hop)):
        windows.append(
            SnippetWindow(
                index=index,
                first_measure=first,
                stop_measure=stop,
                first_measure_number=score.measure_numbers[first],
                last_measure_number=score.measure_numbers[stop - 1],
                start_s=float(score.measure_starts_s[first]),
                end_s=float(score.measure_starts_s[stop]),
            )
        )
    return windows


def events_in_window(events: list[NoteEvent], start_s: float, end_s: float) -> list[NoteEvent]:
    """Notes sounding inside [start_s, end_s), re-timed to the window and cut at its edges.

    A note held across the window's start (a suspension, a tie over the bar line) is
    part of what is heard in those measures, so it is kept from the window's start.
    """
    clipped = []
    for event in events:
        if event.offset_s <= start_s or event.onset_s >= end_s:
            continue
        clipped.append(
            NoteEvent(
                onset_s=max(event.onset_s, start_s) - start_s,
                offset_s=min(event.offset_s, end_s) - start_s,
                key=event.key,
                voice=event.voice,
            )
        )
    return clipped


def score_key(parsed) -> str:
    """The key the score declares (a key signature with its mode), else music21's estimate."""
    import music21

    declared = parsed.recurse().getElementsByClass(music21.key.Key).first()
    if declared is not None:
        return str(declared)
    try:
        return str(parsed.analyze("key"))
    except Exception:  # the key is descriptive only; a failure must not cost the piece
        return ""


MIDI_SUFFIXES = (".mid", ".midi")


def parse_score(path: str | Path, tempo_qpm: float, tune_index: int | None = None) -> ParsedScore:
    """Read a score into measure timings and note events: MIDI files directly (mido),
    every other format with music21. ``tune_index`` picks one tune of an ABC collection.

    Raises :class:`ScoreError` with the reason when the file does not parse or holds
    no measures or notes, or when reading it fails in any other way that belongs to
    this file (an exception from music21 or mido, an element it did not expect): the
    piece is then excluded and the other pieces of a batch go on. Only running out of
    memory is left to fail the job.
    """
    try:
        if Path(path).suffix.lower() in MIDI_SUFFIXES:
            return parse_midi(path, tempo_qpm)
        return parse_with_music21(path, tempo_qpm, tune_index)
    except (ScoreError, MemoryError):
        raise
    except Exception as error:  # an odd file can trip any line of a parser
        raise ScoreError(f"reading the score failed: {type(error).__name__}: {error}") from error


def music21_parse(path: str | Path, tune_index: int | None):
    import music21

    # One tune's text, not the whole book: music21 would parse every tune of the file.
    tune_text = None if tune_index is None else abc_tune_text(Path(path), tune_index)
    try:
        if tune_text is not None:
            return music21.converter.parse(tune_text, format="abc", forceSource=True)
        # Always from the file itself, and no pickle left in music21's scratch folder: a
        # cached parse from another music21 version must not decide what is rendered.
        return music21.converter.parse(str(path), forceSource=True, storePickle=False)
    except Exception as error:  # music21 raises many unrelated types for bad files
        raise ScoreError(f"music21 could not parse the file: {type(error).__name__}: {error}") from error


def parse_with_music21(path: str | Path, tempo_qpm: float, tune_index: int | None = None) -> ParsedScore:
    import music21

    parsed = music21_parse(path, tune_index)
    if isinstance(parsed, music21.stream.Opus):
        raise ScoreError(
            "the file holds several scores (an opus) that a text scan could not tell apart; "
            "split it into one file per piece"
        )
    return score_from_music21(parsed, tempo_qpm, default_title=Path(path).stem)


def score_from_music21(parsed, tempo_qpm: float, default_title: str) -> ParsedScore:
    """Measure timings and note events of a parsed music21 score (one score, not an opus)."""
    import music21

    parts = list(parsed.parts) if hasattr(parsed, "parts") and len(parsed.parts) else [parsed]
    seconds_per_quarter = 60.0 / tempo_qpm

    measures = list(parts[0].getElementsByClass(music21.stream.Measure))
    if not measures:
        # MIDI and some ABC files carry no measures until music21 makes them.
        parts = [part.makeMeasures() for part in parts]
        measures = list(parts[0].getElementsByClass(music21.stream.Measure))
    if not measures:
        raise ScoreError("the score has no measures")

    starts_quarters = [float(measure.offset) for measure in measures]
    end_quarters = max(float(part.highestTime) for part in parts)
    measure_starts_s = np.array(starts_quarters + [end_quarters], dtype=np.float64) * seconds_per_quarter
    measure_numbers = [int(measure.number) for measure in measures]

    events, voice_pitches, unpitched = [], [], 0
    for voice, part in enumerate(parts):
        pitches = []
        # In place: the parsed score is ours, and a copy costs a third of the parse.
        part.stripTies(inPlace=True)
        for element in part.flatten().notes:
            duration = float(element.duration.quarterLength)
            if duration <= 0:  # grace notes carry no time of their own
                continue
            if not element.pitches:
                unpitched += 1
                continue
            onset = float(element.offset) * seconds_per_quarter
            offset = onset + duration * seconds_per_quarter
            for pitch in element.pitches:
                events.append(NoteEvent(onset, offset, int(pitch.midi), voice))
            pitches.append(max(int(pitch.midi) for pitch in element.pitches))
        voice_pitches.append(pitches)
    if not events:
        reason = f" ({unpitched} unpitched notes or empty chords skipped)" if unpitched else ""
        raise ScoreError(f"the score has no notes with a pitch{reason}")
    events.sort(key=lambda event: (event.onset_s, event.voice, event.key))

    title = (parsed.metadata.bestTitle if parsed.metadata else None) or default_title
    key_name = score_key(parsed)
    return ParsedScore(
        title=str(title),
        key=key_name,
        parts=len(parts),
        measure_starts_s=measure_starts_s,
        measure_numbers=measure_numbers,
        events=events,
        voice_pitches=voice_pitches,
        unpitched_skipped=unpitched,
    )


# ---- MIDI -----------------------------------------------------------------------------
# music21 turns a MIDI file into a notated score (quantising onsets, making measures and
# rests, estimating the key), which costs most of a render job's time and is not needed
# to play the file. MIDI files are therefore read directly: each track with notes is a
# voice, notes keep their exact ticks, and bar lines follow the file's time signatures
# (4/4 where it declares none). Times use the fixed tempo, as for every other format.


@dataclass(frozen=True)
class _MidiNote:
    start_tick: int
    end_tick: int
    key: int


def _track_notes(track) -> list[_MidiNote]:
    """Notes of one track; a note-off (or note-on at velocity 0) ends the earliest
    sounding note of that key and channel."""
    tick, sounding, notes = 0, {}, []
    for message in track:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            sounding.setdefault((message.channel, message.note), []).append(tick)
        elif message.type in ("note_on", "note_off"):
            onsets = sounding.get((message.channel, message.note))
            if onsets:
                start = onsets.pop(0)
                if tick > start:
                    notes.append(_MidiNote(start, tick, message.note))
    return sorted(notes, key=lambda note: (note.start_tick, note.key))


def _bar_starts(time_signatures: list[tuple[int, int, int]], end_tick: int, ticks_per_quarter: int) -> list[int]:
    """Tick of every bar line before ``end_tick``; a time-signature change starts a bar."""
    changes = sorted({tick: (numerator, denominator) for tick, numerator, denominator in time_signatures}.items())
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, (4, 4)))
    starts, tick = [], 0
    for index, (change_tick, (numerator, denominator)) in enumerate(changes):
        tick = max(tick, change_tick)
        next_change = changes[index + 1][0] if index + 1 < len(changes) else None
        bar = max(1, round(numerator * 4 / denominator * ticks_per_quarter))
        while tick < end_tick and (next_change is None or tick < next_change):
            starts.append(tick)
            tick += bar
        if next_change is not None:
            tick = min(tick, next_change)
    return starts


def _key_name(mido_key: str) -> str:
    """mido's key ('Bb', 'F#m') in music21's spelling ('B- major', 'f# minor')."""
    minor = mido_key.endswith("m")
    tonic = mido_key[:-1] if minor else mido_key
    tonic = tonic[0] + tonic[1:].replace("b", "-")
    return f"{tonic.lower()} minor" if minor else f"{tonic} major"


def parse_midi(path: str | Path, tempo_qpm: float) -> ParsedScore:
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except Exception as error:  # mido raises OSError, EOFError, ValueError... for bad files
        raise ScoreError(f"mido could not read the MIDI file: {type(error).__name__}: {error}") from error
    if midi.type == 2:
        raise ScoreError("MIDI type 2 (independent sequences) is not supported; save it as type 0 or 1")
    ticks_per_quarter = midi.ticks_per_beat
    time_signatures, key_name, voices = [], "", []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "time_signature":
                time_signatures.append((tick, message.numerator, message.denominator))
            elif message.type == "key_signature" and not key_name:
                key_name = _key_name(message.key)
        notes = _track_notes(track)
        if notes:
            voices.append(notes)
    if not voices:
        raise ScoreError("the score has no notes")

    seconds_per_tick = 60.0 / tempo_qpm / ticks_per_quarter
    end_tick = max(note.end_tick for notes in voices for note in notes)
    bar_starts = _bar_starts(time_signatures, end_tick, ticks_per_quarter)
    events, voice_pitches = [], []
    for voice, notes in enumerate(voices):
        for note in notes:
            events.append(
                NoteEvent(note.start_tick * seconds_per_tick, note.end_tick * seconds_per_tick, note.key, voice)
            )
        highest: dict[int, int] = {}
        for note in notes:  # the top note of each chord, as for music21's chords
            highest[note.start_tick] = max(highest.get(note.start_tick, 0), note.key)
        voice_pitches.append([highest[tick] for tick in sorted(highest)])
    events.sort(key=lambda event: (event.onset_s, event.voice, event.key))
    return ParsedScore(
        title=Path(path).stem,
        key=key_name,
        parts=len(voices),
        measure_starts_s=np.array(bar_starts + [end_tick], dtype=np.float64) * seconds_per_tick,
        measure_numbers=list(range(1, len(bar_starts) + 1)),
        events=events,
        voice_pitches=voice_pitches,
    )
