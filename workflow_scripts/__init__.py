"""chorale-id: the logic of every workflow stage, importable and unit-tested.

- ``stages/``: one module per rule (``render``, ``embed``, ``classify``, ...); start here.
- ``embedders/``: the embedding models and where their weights come from.
- ``music/``: scores to snippets to audio (music21, FluidSynth).
- ``probes/``: metrics, intervals, the metric-learning head and figures, shared by the probe stages.
- ``plumbing/``: no music, no models: files, provenance, logs, settings, caches.
- ``run_stage.py``: the one ``script:`` of every rule.
"""

__version__ = "0.1.0"
