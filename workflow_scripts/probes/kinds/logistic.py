"""Kind ``logistic``: the fast linear probe, a multinomial logistic regression whose L2
strength is chosen on validation.

One fixed penalty is not a fair probe: ``weight_decay: 0.01`` understated basic_pitch by
3.7 points against stock scikit-learn (issue 21), because the right strength depends on the
embedder's dimension and spread. So, per probe run:

1. fit on the train role at each ``l2_grid`` value, strongest first, each fit warm-started
   from the previous one (a regularisation path: later fits converge in few iterations);
2. keep the value with the best validation top-1; a tie keeps the weaker penalty, the one
   that lets the data speak (the default run's validation role holds 170 snippets for 410
   pieces, so ties are common: docs/benchmarks.md, "The fast linear probe");
3. refit on train + validation at that value, from its train solution, to convergence.

The loss is the class-weighted mean cross-entropy (the report's inverse-frequency weights,
as scikit-learn's ``class_weight="balanced"``) plus ``l2/2 * |W|^2`` on the weights, not the
bias. In scikit-learn's terms ``l2 = 1 / (C * n_train)``: its default ``C=1`` on the default
run's ~2,000 training snippets is ``l2 ≈ 5e-4``, inside the grid.

Full-batch L-BFGS in float64 on one thread, as the neural kind's L-BFGS (see
``neural.training_dtype``): the same bits on any core count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from workflow_scripts.probes.kinds import CommonSettings, ProbeKind, ProbeOutcome, require_validation, top1
from workflow_scripts.probes.probe_data import ProbeData, train_and_validation

LBFGS_THREADS = 1


@dataclass(frozen=True)
class LogisticSettings(CommonSettings):
    kind: str = "logistic"
    normalization: str = "standardize"
    class_weighting: bool = True
    l2_grid: tuple[float, ...] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
    max_iter: int = 1000
    tolerance: float = 1e-4

    def __post_init__(self) -> None:
        # YAML gives a list; a frozen settings record keeps a tuple (hashable, and asdict gives it back as a list).
        object.__setattr__(self, "l2_grid", tuple(sorted((float(value) for value in self.l2_grid), reverse=True)))

    def check(self) -> None:
        super().check()
        if self.layer == "weighted":
            raise ValueError("kind logistic reads one layer: use an index, last or mean (weighted needs kind neural)")
        if not self.l2_grid or min(self.l2_grid) <= 0:
            raise ValueError(f"l2_grid must hold positive penalties; got {list(self.l2_grid)}")


class Regression:
    """W, b and a full-batch L-BFGS fit of the penalised, class-weighted cross-entropy."""

    def __init__(self, dim: int, classes: int, settings: LogisticSettings):
        import torch

        self.settings = settings
        self.weight = torch.zeros(dim, classes, dtype=torch.float64, requires_grad=True)
        self.bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
        self.evaluations = 0
        self.loss = float("nan")

    def fit(self, features: np.ndarray, labels: np.ndarray, l2: float, classes: int) -> int:
        """Run L-BFGS to convergence (or ``max_iter``) from the current weights; returns its iterations."""
        import torch

        from workflow_scripts.probes.metrics import inverse_frequency_weights

        x = torch.as_tensor(features, dtype=torch.float64)
        y = torch.as_tensor(labels)
        weights = (
            torch.as_tensor(inverse_frequency_weights(labels, classes), dtype=torch.float64)
            if self.settings.class_weighting
            else None
        )
        loss_function = torch.nn.CrossEntropyLoss(weight=weights)
        optimizer = torch.optim.LBFGS(
            [self.weight, self.bias],
            lr=1.0,
            max_iter=self.settings.max_iter,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=self.settings.tolerance,
            tolerance_change=1e-12,
        )
        evaluations = 0

        def closure():
            nonlocal evaluations
            optimizer.zero_grad()
            loss = loss_function(x @ self.weight + self.bias, y) + 0.5 * l2 * self.weight.pow(2).sum()
            loss.backward()
            evaluations += 1
            self.loss = float(loss.detach())
            return loss

        optimizer.step(closure)
        self.evaluations += evaluations
        return int(optimizer.state_dict()["state"][0]["n_iter"])

    def scores(self, features: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return (torch.as_tensor(features, dtype=torch.float64) @ self.weight + self.bias).numpy()

    def state(self):
        return self.weight.detach().clone(), self.bias.detach().clone()

    def restore(self, state) -> None:
        import torch

        with torch.no_grad():
            self.weight.copy_(state[0])
            self.bias.copy_(state[1])


def fit_and_score(data: ProbeData, settings: LogisticSettings, logger=None) -> ProbeOutcome:
    from workflow_scripts.probes.kinds.neural import torch_threads

    require_validation(data, "logistic")
    classes = len(data.class_names)
    train, validation = data.flat("train"), data.flat("validation")
    started = time.perf_counter()
    with torch_threads(LBFGS_THREADS):
        model = Regression(train.shape[1], classes, settings)
        path = []
        best = None
        for l2 in settings.l2_grid:
            iterations = model.fit(train, data.labels["train"], l2, classes)
            score = top1(data.labels["validation"], model.scores(validation))
            path.append({"l2": l2, "validation_top1": score, "iterations": iterations})
            if logger:
                logger.info("l2 %.1e: validation top-1 %.4f after %d iterations", l2, score, iterations)
            if best is None or score >= best[1]:
                best = (l2, score, model.state())
        chosen, _, state = best
        model.restore(state)
        features, labels = train_and_validation(data)
        refit = model.fit(features, labels, chosen, classes)
        seconds = time.perf_counter() - started
        scores = model.scores(data.flat("test"))
        train_scores = model.scores(features)
    if logger:
        logger.info("chose l2 %.1e on validation; refit on train + validation in %d iterations", chosen, refit)
    point = {"step": model.evaluations, "loss": model.loss, "train_top1": top1(labels, train_scores)}
    return ProbeOutcome(
        scores=scores,
        curve=[point],
        train_seconds=seconds,
        selected_step=refit,
        selected={"l2": chosen},
        extras={"l2_path": path, "converged": refit < settings.max_iter},
    )


KIND = ProbeKind(
    name="logistic",
    settings=LogisticSettings,
    fit_and_score=fit_and_score,
    iterative=lambda settings: False,
    selects_on_validation=lambda settings: True,
    description="multinomial logistic regression by L-BFGS to convergence, its L2 strength chosen on validation",
)
