"""chorale-id: the logic of every workflow stage, importable and unit-tested."""

__version__ = "0.1.0"
