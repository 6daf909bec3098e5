"""Scores to sound: cutting a score into snippets by measures (music21) and rendering them
with FluidSynth. Used by the render stage, and by tests and benchmarks."""
