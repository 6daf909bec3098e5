"""Scores to sound: cutting a score into snippets by measures (music21), finding the tunes of
an ABC tune book by text (tune_books), and rendering them
with FluidSynth. Used by the render stage (rules/common.smk also resolves SoundFonts with
synth when the workflow is parsed), and by tests and benchmarks."""
