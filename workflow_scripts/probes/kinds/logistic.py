"""Kind ``logistic``: the fast linear probe, a multinomial logistic regression whose L2
strength is chosen on held-out training snippets.

One fixed penalty is not a fair probe: ``weight_decay: 0.01`` understated basic_pitch by
3.7 points against stock scikit-learn (issue 21), because the right strength depends on the
embedder's dimension and spread. So, per probe run:

1. split train + validation into ``selection_folds`` folds (``probe_data.selection_folds``:
   each piece's measure windows dealt over the folds, the overlap guard kept in each);
2. in each fold, fit on the rest at each ``l2_grid`` value, strongest first, each fit
   warm-started from the previous one (a regularisation path: later fits converge in few
   iterations), and count the held-out snippets each penalty names right;
3. keep the penalty with the most right over all folds; a tie keeps the weaker penalty, the
   one that lets the data speak;
4. refit on train + validation at that value, to convergence.

With ``selection_folds: 0`` the path is fitted on the train role once and judged on the
validation role. That role is small (170 snippets for 410 pieces in the default run), so
its choice is noisy: penalties tie, or differ by one snippet, and a rounding change on
another CPU flips the choice (docs/benchmarks.md, "The fast linear probe"). Folds judge on
all ~2,000 training snippets instead.

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
from workflow_scripts.probes.probe_data import ProbeData, selection_folds, train_and_validation

LBFGS_THREADS = 1


@dataclass(frozen=True)
class LogisticSettings(CommonSettings):
    kind: str = "logistic"
    normalization: str = "standardize"
    class_weighting: bool = True
    l2_grid: tuple[float, ...] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
    max_iter: int = 1000
    tolerance: float = 1e-4
    selection_folds: int = 5

    def __post_init__(self) -> None:
        # YAML gives a list; a frozen settings record keeps a tuple (hashable, and asdict gives it back as a list).
        object.__setattr__(self, "l2_grid", tuple(sorted((float(value) for value in self.l2_grid), reverse=True)))

    def check(self) -> None:
        super().check()
        if self.layer == "weighted":
            raise ValueError("kind logistic reads one layer: use an index, last or mean (weighted needs kind neural)")
        if not self.l2_grid or min(self.l2_grid) <= 0:
            raise ValueError(f"l2_grid must hold positive penalties; got {list(self.l2_grid)}")
        if self.selection_folds < 0 or self.selection_folds == 1:
            raise ValueError(
                f"selection_folds must be 0 (judge on the validation role) or at least 2; got {self.selection_folds}"
            )


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


def penalty_path(
    settings: LogisticSettings, fit: tuple[np.ndarray, np.ndarray], held: tuple[np.ndarray, np.ndarray], classes: int
) -> list[dict]:
    """Fit on ``fit`` at each penalty, strongest first from warm starts; count ``held``'s right answers."""
    model = Regression(fit[0].shape[1], classes, settings)
    path = []
    for l2 in settings.l2_grid:
        iterations = model.fit(fit[0], fit[1], l2, classes)
        right = int((model.scores(held[0]).argmax(axis=1) == held[1]).sum())
        path.append({"l2": l2, "held_right": right, "held": len(held[1]), "iterations": iterations})
    return path


def judged_paths(data: ProbeData, settings: LogisticSettings, classes: int, workers: int = 1) -> list[list[dict]]:
    """One penalty path per fold of train + validation, or one judged on the validation role.

    The folds' paths run on ``workers`` threads at once, each path on one thread of its own,
    so the figures are the same whatever the job's thread count."""
    from concurrent.futures import ThreadPoolExecutor

    if settings.selection_folds == 0:
        require_validation(data, "logistic")
        train = (data.flat("train"), data.labels["train"])
        return [penalty_path(settings, train, (data.flat("validation"), data.labels["validation"]), classes)]
    features, labels = train_and_validation(data)

    def path(fold: tuple[np.ndarray, np.ndarray]) -> list[dict]:
        fit, held = fold
        return penalty_path(settings, (features[fit], labels[fit]), (features[held], labels[held]), classes)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(path, selection_folds(data, settings.selection_folds, settings.seed)))


def choose_penalty(settings: LogisticSettings, paths: list[list[dict]]) -> tuple[float, list[dict]]:
    """The penalty with the most held-out snippets right over all paths (ties: the weaker), and the table."""
    table = []
    for index, l2 in enumerate(settings.l2_grid):
        right = sum(path[index]["held_right"] for path in paths)
        held = sum(path[index]["held"] for path in paths)
        table.append({"l2": l2, "held_out_top1": right / held if held else float("nan"), "held_out": held})
    best = max(range(len(table)), key=lambda index: (table[index]["held_out_top1"], index))
    return table[best]["l2"], table


def fit_and_score(data: ProbeData, settings: LogisticSettings, logger=None) -> ProbeOutcome:
    import torch

    from workflow_scripts.probes.kinds.neural import torch_threads

    classes = len(data.class_names)
    workers = torch.get_num_threads()  # the job's threads, before each fit is pinned to one
    started = time.perf_counter()
    with torch_threads(LBFGS_THREADS):
        paths = judged_paths(data, settings, classes, workers)
        chosen, table = choose_penalty(settings, paths)
        if logger:
            for row in table:
                logger.info(
                    "l2 %.1e: held-out top-1 %.4f over %d snippets", row["l2"], row["held_out_top1"], row["held_out"]
                )
        features, labels = train_and_validation(data)
        model = Regression(features.shape[1], classes, settings)
        # The path's stronger penalties first, as in selection, so the final fit starts near its optimum.
        for l2 in settings.l2_grid[: settings.l2_grid.index(chosen)]:
            model.fit(features, labels, l2, classes)
        refit = model.fit(features, labels, chosen, classes)
        seconds = time.perf_counter() - started
        scores = model.scores(data.flat("test"))
        train_scores = model.scores(features)
    if logger:
        logger.info("chose l2 %.1e; refit on train + validation in %d iterations", chosen, refit)
    point = {"step": model.evaluations, "loss": model.loss, "train_top1": top1(labels, train_scores)}
    return ProbeOutcome(
        scores=scores,
        curve=[point],
        train_seconds=seconds,
        selected_step=refit,
        selected={"l2": chosen},
        extras={
            "l2_path": table,
            "selection": f"{settings.selection_folds} folds of train + validation"
            if settings.selection_folds
            else "validation role",
            "converged": refit < settings.max_iter,
        },
    )


KIND = ProbeKind(
    name="logistic",
    settings=LogisticSettings,
    fit_and_score=fit_and_score,
    iterative=lambda settings: False,
    selects_on_validation=lambda settings: settings.selection_folds == 0,
    description="multinomial logistic regression by L-BFGS to convergence, its L2 strength chosen on held-out training folds",
)
