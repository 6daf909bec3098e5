"""Metric learning on frozen embeddings: a projection head trained so that snippets of
one piece lie close together, judged on pieces it never saw.

The head (standardise with training statistics, then ``d -> hidden -> dim`` with ReLU,
or a linear ``d -> dim`` when ``hidden`` is 0) is trained with the supervised
contrastive loss (Khosla et al., 2020) over in-batch positives and negatives: each batch
holds ``snippets_per_piece`` snippets of each of ``pieces_per_batch`` training pieces, so
every anchor has positives and many negatives. The epoch kept is the one with the best
retrieval MAP among the *validation* pieces (training pieces held out from the head's
training); the held-out test pieces are only ever projected, once, at the end.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.plumbing.job_log import Progress


@dataclass(frozen=True)
class HeadSettings:
    enabled: bool = True
    hidden: int = 512
    dim: int = 128
    temperature: float = 0.1
    # Chosen on validation-piece MAP (spectral, by_piece) among seven settings of learning
    # rate, weight decay, dropout, temperature and a linear head; see the README.
    learning_rate: float = 3e-4
    weight_decay: float = 1e-2
    dropout: float = 0.5
    epochs: int = 200
    patience: int = 30
    pieces_per_batch: int = 32
    snippets_per_piece: int = 4
    seed: int = 0

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> HeadSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"retrieval.metric_head: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**settings)


def supervised_contrastive_loss(embeddings, labels, temperature: float):
    """Mean over anchors with a positive of -mean_p log softmax(similarity / t)[p]."""
    import torch
    import torch.nn.functional as functional

    unit = functional.normalize(embeddings, dim=1)
    logits = unit @ unit.T / temperature
    self_mask = torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_probabilities = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    anchors = positives.any(dim=1)
    if not anchors.any():
        raise ValueError("a batch without any positive pair: every piece in it has a single snippet")
    positive_log_probabilities = log_probabilities.masked_fill(~positives, 0.0).sum(dim=1)
    return -(positive_log_probabilities[anchors] / positives[anchors].sum(dim=1)).mean()


def balanced_batches(
    labels: np.ndarray, pieces_per_batch: int, per_piece: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches: each training piece with two or more snippets appears once,
    with ``per_piece`` of its snippets (all of them, when it has fewer); the pieces are
    spread evenly so no batch is left with a single piece."""
    by_piece = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    usable = [label for label, rows in by_piece.items() if len(rows) >= 2]
    rng.shuffle(usable)
    if len(usable) < 2:  # one piece has no negatives
        return []
    batches = []
    for chosen in np.array_split(np.array(usable), math.ceil(len(usable) / pieces_per_batch)):
        rows = [
            rng.choice(by_piece[label], size=min(per_piece, len(by_piece[label])), replace=False) for label in chosen
        ]
        batches.append(np.concatenate(rows))
    return batches


def build_head(input_dim: int, settings: HeadSettings, mean: np.ndarray, std: np.ndarray):
    import torch
    from torch import nn

    class ProjectionHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            if settings.hidden:
                self.layers = nn.Sequential(
                    nn.Linear(input_dim, settings.hidden),
                    nn.ReLU(),
                    nn.Dropout(settings.dropout),
                    nn.Linear(settings.hidden, settings.dim),
                )
            else:
                self.layers = nn.Linear(input_dim, settings.dim)

        def forward(self, x):
            return self.layers((x - self.mean) / self.std)

    return ProjectionHead()


def project(head, vectors: np.ndarray) -> np.ndarray:
    import torch

    head.eval()
    with torch.inference_mode():
        return head(torch.as_tensor(vectors, dtype=torch.float32)).numpy().astype(np.float64)


def mean_average_precision(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Retrieval MAP by cosine, each snippet querying all others (vectorised: it runs
    every epoch; retrieval.per_query_metrics is the reference it is tested against)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :-1]  # the query itself sorts last
    relevant = labels[order] == labels[:, None]
    counts = relevant.sum(axis=1)
    scored = counts > 0
    if not scored.any():
        return float("nan")
    precision = np.cumsum(relevant, axis=1) / np.arange(1, relevant.shape[1] + 1)
    return float(((precision * relevant).sum(axis=1)[scored] / counts[scored]).mean())


def train_head(
    train: np.ndarray,
    train_labels: np.ndarray,
    validation: np.ndarray,
    validation_labels: np.ndarray,
    settings: HeadSettings,
    logger=None,
) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Train the head on ``train``; keep the epoch with the best validation-piece MAP.

    Without validation pieces (a split with ``validation_fraction: 0``) the head trains
    for the fixed number of epochs; the returned facts say which happened.
    """
    import torch

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    mean, std = train.mean(axis=0), train.std(axis=0)
    head = build_head(train.shape[1], settings, mean, np.where(std > 1e-12, std, 1.0))
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    x = torch.as_tensor(train, dtype=torch.float32)
    _, label_codes = np.unique(train_labels, return_inverse=True)
    y = torch.as_tensor(label_codes)
    selecting = len(np.unique(validation_labels)) >= 2
    best = {"map": -1.0, "epoch": 0, "state": None}
    history = []
    progress = Progress(settings.epochs, "epoch")
    for epoch in range(1, settings.epochs + 1):
        head.train()
        losses = []
        for rows in balanced_batches(label_codes, settings.pieces_per_batch, settings.snippets_per_piece, rng):
            batch = torch.as_tensor(rows)
            loss = supervised_contrastive_loss(head(x[batch]), y[batch], settings.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        if not losses:
            raise ValueError("metric head: fewer than two training pieces with two or more snippets")
        validation_map = (
            mean_average_precision(project(head, validation), validation_labels) if selecting else float("nan")
        )
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_map": validation_map})
        if logger and (epoch % 25 == 0 or epoch == settings.epochs):
            logger.info(
                "metric head %s loss %.4f, validation MAP %.4f", progress(epoch), history[-1]["loss"], validation_map
            )
        if selecting:
            if validation_map > best["map"]:
                best = {"map": validation_map, "epoch": epoch, "state": copy.deepcopy(head.state_dict())}
            elif epoch - best["epoch"] >= settings.patience:
                break
    if selecting:
        head.load_state_dict(best["state"])
    facts = {
        "selected_epoch": best["epoch"] if selecting else len(history),
        "selected_on": "validation pieces" if selecting else "fixed epochs (no validation pieces)",
        "validation_map": best["map"] if selecting else None,
        "epochs_run": len(history),
        "training_pieces": int(len(np.unique(train_labels))),
        "validation_pieces": int(len(np.unique(validation_labels))),
        "settings": asdict(settings),
    }
    return head, pd.DataFrame(history), facts
