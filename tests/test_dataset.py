import numpy as np
import pytest

from workflow_scripts.plumbing.embeddings_table import embeddings_to_table, table_to_embeddings
from workflow_scripts.plumbing.io_utils import write_parquet_atomic
from workflow_scripts.stages.dataset import DatasetError, gather_shards

EMBEDDER = {
    "name": "spectral",
    "model_id": "m",
    "revision": "1",
    "layers": 2,
    "dim": 3,
    "sample_rate": 24000,
    "settings": {},
}


def write_shard(folder, piece, vectors, embedder=EMBEDDER, status="ok", reason=""):
    ids = [f"{piece}:{i:03d}" for i in range(len(vectors))]
    table = embeddings_to_table(ids, [piece] * len(ids), list(range(len(ids))), np.asarray(vectors, np.float32))
    path = folder / f"{piece}.parquet"
    write_parquet_atomic(table, path, {"piece_id": piece, "embedder": embedder, "status": status, "reason": reason})
    return path


def test_gather_joins_shards_and_carries_exclusions(tmp_path):
    paths = [
        write_shard(tmp_path, "a", np.ones((2, 2, 3))),
        write_shard(tmp_path, "b", np.zeros((3, 2, 3))),
        write_shard(tmp_path, "c", np.zeros((0, 2, 3)), status="excluded", reason="the score has no notes"),
    ]
    dataset, summary = gather_shards(paths, "spectral")
    assert dataset.num_rows == 5
    assert table_to_embeddings(dataset, 2, 3).shape == (5, 2, 3)
    assert summary["excluded"] == {"c": "the score has no notes"}


def test_nan_embeddings_are_refused_with_the_piece_named(tmp_path):
    vectors = np.ones((2, 2, 3))
    vectors[1, 0, 2] = np.nan
    paths = [write_shard(tmp_path, "good", np.ones((2, 2, 3))), write_shard(tmp_path, "bwv9.9", vectors)]
    with pytest.raises(DatasetError, match=r"piece 'bwv9.9'.*NaN or Inf.*bwv9.9:001"):
        gather_shards(paths, "spectral")


def test_mixed_settings_are_refused(tmp_path):
    other = {**EMBEDDER, "revision": "2"}
    paths = [
        write_shard(tmp_path, "a", np.ones((1, 2, 3))),
        write_shard(tmp_path, "b", np.ones((1, 2, 3)), embedder=other),
    ]
    with pytest.raises(DatasetError, match=r"piece 'b'.*revision"):
        gather_shards(paths, "spectral")


def test_shards_of_another_embedder_or_without_provenance_are_refused(tmp_path):
    import pyarrow.parquet as pq

    path = write_shard(tmp_path, "a", np.ones((1, 2, 3)))
    with pytest.raises(DatasetError, match="expected 'mert'"):
        gather_shards([path], "mert")
    stray = tmp_path / "stray.parquet"
    pq.write_table(pq.read_table(path).replace_schema_metadata({}), stray)
    with pytest.raises(ValueError, match="no 'chorale_id' provenance"):
        gather_shards([stray], "spectral")
