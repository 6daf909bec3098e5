"""Atomic file output, Parquet with provenance metadata, and checksums.

Every writer here goes through a temporary file in the destination folder and an
``os.replace``, so a killed job never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"chorale_id"


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; move it into place on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp creates owner-only files; results are meant to be read by others too.
        os.chmod(temporary_path, 0o666 & ~_current_umask())
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(destination: str | os.PathLike, text: str) -> None:
    with atomic_path(destination) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json_atomic(destination: str | os.PathLike, payload: Any) -> None:
    write_text_atomic(destination, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet_atomic(table: pa.Table, destination: str | os.PathLike, provenance: dict[str, Any]) -> None:
    """Write ``table`` with ``provenance`` stored as JSON in the file's key-value metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(metadata)
    with atomic_path(destination) as temporary:
        # No statistics timestamps or writer-dependent fields vary between runs, so
        # the same table and provenance give the same bytes.
        pq.write_table(table, temporary, compression="zstd")


def write_tsv_atomic(frame, destination: str | os.PathLike) -> None:
    with atomic_path(destination) as temporary:
        frame.to_csv(temporary, sep="\t", index=False)


def read_provenance(path: str | os.PathLike, schema: pa.Schema | None = None) -> dict[str, Any]:
    """The provenance dictionary stored by :func:`write_parquet_atomic`; pass the ``schema``
    of a table already read from ``path`` to save reading its footer again."""
    metadata = (schema if schema is not None else pq.read_schema(path)).metadata or {}
    if PROVENANCE_KEY not in metadata:
        raise ValueError(
            f"{path}: no '{PROVENANCE_KEY.decode()}' provenance in the Parquet metadata; "
            "it was not written by this workflow. Delete it and rerun."
        )
    return json.loads(metadata[PROVENANCE_KEY])


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(payload: Any) -> str:
    """Digest of a JSON-serialisable value, independent of key order."""
    encoded = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
