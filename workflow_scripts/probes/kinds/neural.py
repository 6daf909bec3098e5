"""Kind ``neural``: the report's torch heads (the default kind).

- heads: ``linear`` (``nn.Linear(d, C)``) or ``mlp`` (d -> ``hidden_units`` -> C, ReLU,
  dropout), as the report proposes;
- optimisers: the report's recipe (Adam, lr 1e-3, batch 256, 1000 epochs, no weight
  decay) or full-batch L-BFGS with a fixed L2 penalty;
- class weights as in the report, v_c = (1/n_c) / sum_j (1/n_j) * C (``class_weighting``);
- ``layer: weighted`` learns a softmax-weighted sum of layers with the head.

Model selection: with ``early_stopping`` the head trains on the ``train`` snippets only and
keeps the epoch with the best validation top-1 (stopping after ``patience`` epochs without
improvement); the test set is then scored once. Without it (the report's fixed recipe)
the head trains on train and validation together for the fixed number of epochs, and
the per-epoch test curve is logged as in the report; nothing is selected on it.
"""

# Kind modules load at every Snakemake start (the registry finds them there): scikit-learn,
# which probes.metrics imports, costs seconds, so metrics are imported where they are used.
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass

from workflow_scripts.plumbing.job_log import Progress
from workflow_scripts.probes.kinds import CommonSettings, ProbeKind, ProbeOutcome
from workflow_scripts.probes.probe_data import ProbeData

# L-BFGS trains and scores on one thread whatever the job's thread count: a matrix product
# sums in another order on two threads, and the full-batch line search carries the
# difference into the result (see training_dtype). On one thread and in float64 the result
# is the same bits however many cores the rule gets (1.5 s for the spectral piano probe).
LBFGS_THREADS = 1
OPTIMIZERS = ("adam", "lbfgs")
HEADS = ("linear", "mlp")


@dataclass(frozen=True)
class NeuralSettings(CommonSettings):
    kind: str = "neural"
    head: str = "linear"
    optimizer: str = "adam"
    class_weighting: bool = True
    epochs: int = 1000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lbfgs_max_iter: int = 500
    hidden_units: int = 512
    dropout: float = 0.5
    early_stopping: bool = False
    patience: int = 100

    def check(self) -> None:
        super().check()
        for field, allowed in (("optimizer", OPTIMIZERS), ("head", HEADS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"probe {field} '{getattr(self, field)}' is not one of {allowed}")
        if self.optimizer == "lbfgs" and (self.head != "linear" or self.early_stopping or self.layer == "weighted"):
            raise ValueError(
                "lbfgs trains a linear head on fixed features only: use adam for mlp, weighted layers or early stopping"
            )


def build_model(layers: int, dim: int, num_classes: int, probe: NeuralSettings):
    import torch
    from torch import nn

    class LayerMix(nn.Module):
        """Softmax-weighted sum over layers (one weight per layer, learned with the head)."""

        def __init__(self, count: int):
            super().__init__()
            self.logits = nn.Parameter(torch.zeros(count))

        def forward(self, features):
            return torch.einsum("l,bld->bd", torch.softmax(self.logits, dim=0), features)

    mix = LayerMix(layers) if layers > 1 else nn.Flatten(start_dim=1)
    if probe.head == "linear":
        head = nn.Linear(dim, num_classes)
    else:
        head = nn.Sequential(
            nn.Linear(dim, probe.hidden_units),
            nn.ReLU(),
            nn.Dropout(probe.dropout),
            nn.Linear(probe.hidden_units, num_classes),
        )
    return nn.Sequential(mix, head)


def _scores(model, features):
    import torch

    model.eval()
    with torch.no_grad():
        scores = model(features).numpy()
    model.train()
    return scores


def _accuracy_pair(model, features, labels) -> tuple[float, float]:
    from workflow_scripts.probes.metrics import top_k_correct

    if len(labels) == 0:
        return float("nan"), float("nan")
    scores = _scores(model, features)
    labels = labels.numpy()
    return float(top_k_correct(labels, scores, 1).mean()), float(top_k_correct(labels, scores, 5).mean())


def training_dtype(probe: NeuralSettings):
    """float64 for L-BFGS, float32 for Adam.

    Full-batch L-BFGS in float32 amplifies rounding: the order in which a matrix product sums
    changes with torch's thread count and the CPU's vector width (AVX2, AVX-512), and 50
    iterations of line search turn that into test scores up to 0.9 apart and one test snippet
    more or less (linear_lbfgs_std on the spectral piano data: 89, 90 or 91 of 434 correct).
    In float64 the scores stay within 1e-10 of each other, far below the closest call between
    two pieces (6e-4). Adam's minibatch noise dwarfs rounding, so it keeps float32's speed.
    """
    import torch

    return torch.float64 if probe.optimizer == "lbfgs" else torch.float32


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block on ``count`` intra-op threads, then give the caller back its own count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_probe(data: ProbeData, probe: NeuralSettings, logger=None):
    """Train the head; returns (test scores, curve rows, train seconds, chosen step)."""
    import torch

    from workflow_scripts.probes.metrics import inverse_frequency_weights

    torch.manual_seed(probe.seed)
    dtype = training_dtype(probe)
    tensors = {role: torch.as_tensor(values, dtype=dtype) for role, values in data.features.items()}
    labels = {role: torch.as_tensor(values) for role, values in data.labels.items()}
    if not probe.early_stopping:  # the fixed recipe trains on everything that is not test
        tensors["train"] = torch.cat([tensors["train"], tensors["validation"]])
        labels["train"] = torch.cat([labels["train"], labels["validation"]])
    if len(labels["train"]) == 0:
        raise ValueError("no training snippets: check the split's roles")
    if probe.early_stopping and len(labels["validation"]) == 0:
        raise ValueError(
            "the probe selects its epoch on validation (early_stopping: true) but the split has no validation "
            "snippets (splits.validation_fraction is 0?): give the split a validation share or set "
            "early_stopping: false"
        )
    num_classes = len(data.class_names)
    _, layers, dim = tensors["train"].shape
    model = build_model(layers, dim, num_classes, probe).to(dtype)
    weights = (
        torch.as_tensor(inverse_frequency_weights(labels["train"].numpy(), num_classes), dtype=dtype)
        if probe.class_weighting
        else None
    )
    loss_function = torch.nn.CrossEntropyLoss(weight=weights)
    monitored = "validation" if probe.early_stopping else "test"
    curve: list[dict[str, float]] = []

    def record(step: int, loss: float) -> None:
        train_top1, train_top5 = _accuracy_pair(model, tensors["train"], labels["train"])
        top1, top5 = _accuracy_pair(model, tensors[monitored], labels[monitored])
        curve.append(
            {
                "step": step,
                "loss": loss,
                "train_top1": train_top1,
                "train_top5": train_top5,
                f"{monitored}_top1": top1,
                f"{monitored}_top5": top5,
            }
        )

    started = time.perf_counter()
    if probe.optimizer == "adam":
        chosen_step = _train_adam(
            model, tensors["train"], labels["train"], loss_function, probe, record, curve, monitored, logger
        )
        seconds = time.perf_counter() - started
        return _scores(model, tensors["test"]), curve, seconds, chosen_step, model
    with torch_threads(LBFGS_THREADS):
        chosen_step = _train_lbfgs(model, tensors["train"], labels["train"], loss_function, probe, record, logger)
        seconds = time.perf_counter() - started
        return _scores(model, tensors["test"]), curve, seconds, chosen_step, model


def _curve_text(point: dict[str, float]) -> str:
    return ", ".join(
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}" for name, value in point.items()
    )


def _train_adam(model, x_train, y_train, loss_function, probe, record, curve, monitored, logger) -> int:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=probe.learning_rate, weight_decay=probe.weight_decay)
    generator = torch.Generator().manual_seed(probe.seed)
    best = (-1.0, 0)
    best_state = None
    progress = Progress(probe.epochs, "epoch")
    for epoch in range(1, probe.epochs + 1):
        order = torch.randperm(len(y_train), generator=generator)
        total = 0.0
        for batch in order.split(probe.batch_size):
            optimizer.zero_grad()
            loss = loss_function(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += loss.detach().item() * len(batch)
        record(epoch, total / len(y_train))
        if logger and (epoch % 100 == 0 or epoch == probe.epochs):
            logger.info("%s %s", progress(epoch), _curve_text(curve[-1]))
        if probe.early_stopping:
            score = curve[-1][f"{monitored}_top1"]
            if score > best[0]:
                best, best_state = (score, epoch), copy.deepcopy(model.state_dict())
            elif epoch - best[1] >= probe.patience:
                if logger:
                    logger.info("early stop at epoch %d; best validation top-1 %.4f at epoch %d", epoch, *best)
                break
    if probe.early_stopping and best_state is not None:
        model.load_state_dict(best_state)
        return best[1]
    return probe.epochs


def _train_lbfgs(model, x_train, y_train, loss_function, probe, record, logger) -> int:
    import torch

    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=probe.lbfgs_max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )
    head = model[1]
    evaluations = 0

    def closure():
        nonlocal evaluations
        optimizer.zero_grad()
        # L2 on the weights only, as in a regularised logistic regression.
        loss = loss_function(model(x_train), y_train) + 0.5 * probe.weight_decay * head.weight.pow(2).sum()
        loss.backward()
        evaluations += 1
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = float(loss_function(model(x_train), y_train))
    record(evaluations, final)
    if logger:
        logger.info("L-BFGS stopped after %d evaluations", evaluations)
    return evaluations


def fit_and_score(data: ProbeData, probe: NeuralSettings, logger=None) -> ProbeOutcome:
    scores, curve, seconds, chosen_step, model = train_probe(data, probe, logger)
    extras = {}
    if probe.layer == "weighted":
        import torch

        extras["layer_weights"] = torch.softmax(model[0].logits.detach(), dim=0).tolist()
    return ProbeOutcome(scores=scores, curve=curve, train_seconds=seconds, selected_step=chosen_step, extras=extras)


KIND = ProbeKind(
    name="neural",
    settings=NeuralSettings,
    fit_and_score=fit_and_score,
    # L-BFGS's single full-batch step gives one point: no curve figure.
    iterative=lambda probe: probe.optimizer == "adam",
    selects_on_validation=lambda probe: probe.early_stopping,
    description="a torch head (linear or mlp) trained by Adam (the report's recipe) or L-BFGS with a fixed L2",
)
