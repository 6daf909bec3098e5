"""Shared by the stages, and free of music and models: atomic writes and provenance, job
logs, the config's settings, the code digests behind cache keys, the piece cache and batch
indexes, and the file layouts stages hand each other (snippet audio and manifests,
embedding tables)."""
