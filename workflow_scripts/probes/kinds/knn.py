"""Kind ``knn``: cosine nearest neighbours among the training snippets, k chosen on validation.

A snippet's score for a piece is the summed cosine similarity of its k nearest training
snippets of that piece, plus a millionth of its similarity to that piece's nearest snippet,
so that pieces with no vote still rank by how close they come (top-5 and the rank metrics
need every piece ordered). k is chosen on validation with the train snippets as the
reference (a tie keeps the smaller k); the test snippets are then scored against train and
validation together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from workflow_scripts.probes.kinds import CommonSettings, ProbeKind, ProbeOutcome, require_validation, top1
from workflow_scripts.probes.probe_data import ProbeData, train_and_validation

NEAREST_OF_PIECE_WEIGHT = 1e-6


@dataclass(frozen=True)
class KnnSettings(CommonSettings):
    kind: str = "knn"
    k_grid: tuple[int, ...] = (1, 3, 5, 10, 20)

    def __post_init__(self) -> None:
        object.__setattr__(self, "k_grid", tuple(sorted(int(value) for value in self.k_grid)))

    def check(self) -> None:
        super().check()
        if self.layer == "weighted":
            raise ValueError("kind knn reads one layer: use an index, last or mean (weighted needs kind neural)")
        if not self.k_grid or min(self.k_grid) < 1:
            raise ValueError(f"k_grid must hold positive neighbour counts; got {list(self.k_grid)}")


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def knn_scores(queries: np.ndarray, reference: np.ndarray, labels: np.ndarray, classes: int, k: int) -> np.ndarray:
    """(queries, classes): summed similarity of the k nearest reference rows per class, tie-broken by the nearest."""
    similarity = unit_rows(queries) @ unit_rows(reference).T
    k = min(k, similarity.shape[1])
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    rows = np.arange(len(queries))[:, None]
    votes = np.zeros((len(queries), classes))
    np.add.at(votes, (rows, labels[nearest]), similarity[rows, nearest])
    best_of_class = np.full((len(queries), classes), -1.0)
    for index in range(classes):
        members = labels == index
        if members.any():
            best_of_class[:, index] = similarity[:, members].max(axis=1)
    return votes + NEAREST_OF_PIECE_WEIGHT * best_of_class


def fit_and_score(data: ProbeData, settings: KnnSettings, logger=None) -> ProbeOutcome:
    require_validation(data, "knn")
    classes = len(data.class_names)
    started = time.perf_counter()
    train, labels = data.flat("train"), data.labels["train"]
    path = []
    for k in settings.k_grid:
        score = top1(data.labels["validation"], knn_scores(data.flat("validation"), train, labels, classes, k))
        path.append({"k": k, "validation_top1": score})
        if logger:
            logger.info("k %d: validation top-1 %.4f", k, score)
    chosen = max(path, key=lambda point: (point["validation_top1"], -point["k"]))["k"]
    reference, reference_labels = train_and_validation(data)
    scores = knn_scores(data.flat("test"), reference, reference_labels, classes, chosen)
    seconds = time.perf_counter() - started
    if logger:
        logger.info("chose k %d on validation", chosen)
    # Leave-one-in train top-1 is 1 at k=1 by construction, so the curve's point reports the reference's own top-1 at k.
    own = top1(reference_labels, knn_scores(reference, reference, reference_labels, classes, chosen))
    return ProbeOutcome(
        scores=scores,
        curve=[{"step": 1, "loss": float("nan"), "train_top1": own}],
        train_seconds=seconds,
        selected_step=1,
        selected={"k": chosen},
        extras={"k_path": path},
    )


KIND = ProbeKind(
    name="knn",
    settings=KnnSettings,
    fit_and_score=fit_and_score,
    iterative=lambda settings: False,
    selects_on_validation=lambda settings: True,
    description="cosine k nearest neighbours among the training snippets, k chosen on validation",
)
