"""Early stopping at rungs of epochs: asynchronous successive halving (ASHA, Li et al. 2020),
ranked by validation accuracy alone (`asha`) or by every objective (`mo_asha`, Schmucker et
al. 2021, "Multi-objective asynchronous successive halving").

A trial reports after each epoch. The rungs are the epochs `eta**k` (k = 0, 1, ...) below the
trial's last epoch. At a rung a trial is ranked among every trial that reached that rung
before it, itself included; of those n it continues when it ranks among the best
max(1, n // eta), and stops otherwise. So the first trials at a rung continue only when they
rank first, as in Optuna's SuccessiveHalvingPruner; no trial is ever resumed (none is paused).

`mo_asha` ranks by non-dominated sorting of (validation accuracy, latency, size): the first
front before the second, and within a front the larger crowding distance first (NSGA-II's
order, the selection MO-ASHA's paper calls NSGA-II), equal distances by accuracy. Latency
and size do not change while a student trains, so a small, fast student is kept on at a rung
where a large, accurate one would also be; accuracy-only ASHA stops the small students
first, since they learn slowest.
Optuna's own pruners refuse multi-objective studies (optuna issue 3450) and Ray's ASHA ranks
one metric, hence this module, used by both backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from automl.pareto import non_dominated

RUNGS_ATTR = "rungs"  # the Optuna user attribute that keeps a trial's rung reports


@dataclass(frozen=True)
class EpochReport:
    """What a trial knows of its student after an epoch: validation accuracy so far, and its
    latency and packed size (measured before training)."""

    epoch: int
    val_accuracy: float
    latency_ms: float
    size_bytes: int

    def minimised(self) -> tuple[float, float, float]:
        return (1.0 - self.val_accuracy, self.latency_ms, float(self.size_bytes))


def rungs(max_epochs: int, eta: int) -> tuple[int, ...]:
    """The epochs at which trials of `max_epochs` epochs are compared: 1, eta, eta**2, ...
    below `max_epochs` (a trial's last epoch is its result, not a rung)."""
    out, epoch = [], 1
    while epoch < max_epochs:
        out.append(epoch)
        epoch *= eta
    return tuple(out)


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point (n, m) within its front: the sum over the
    objectives of the gap between its two neighbours, divided by the objective's range;
    the extremes of every objective get infinity."""
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            gaps = (points[order[2:], j] - points[order[:-2], j]) / span
            distance[order[1:-1]] += gaps
    return distance


def pareto_order(points: np.ndarray) -> list[int]:
    """Indices of `points` (n, m; all minimised) from best to worst: by non-dominated front,
    then by crowding distance (larger first), then by the first objective (the one training
    moves: 1 - accuracy), then by index (earlier first)."""
    points = np.asarray(points, dtype=float)
    left = list(range(len(points)))
    order: list[int] = []
    while left:
        front = [left[i] for i in non_dominated(points[left])]
        crowd = crowding_distance(points[front])
        ranked = sorted(zip(-crowd, points[front, 0], front, strict=True))
        order += [i for _, _, i in ranked]
        left = [i for i in left if i not in set(front)]
    return order


@dataclass
class RungTable:
    """The results every trial reported at each rung, and the stop-or-continue rule. One table
    serves a whole search; `load` refills it on resume from what the study recorded."""

    mode: Literal["asha", "mo_asha"]
    max_epochs: int
    eta: int = 3
    results: dict[int, dict[int, EpochReport]] = field(default_factory=dict)

    @property
    def rung_epochs(self) -> tuple[int, ...]:
        return rungs(self.max_epochs, self.eta)

    def report(self, trial: int, report: EpochReport) -> bool:
        """Record `trial`'s `report`; True when the trial should stop here."""
        if report.epoch not in self.rung_epochs:
            return False
        at_rung = self.results.setdefault(report.epoch, {})
        at_rung[trial] = report
        numbers = list(at_rung)
        if self.mode == "asha":
            order = sorted(range(len(numbers)), key=lambda i: -at_rung[numbers[i]].val_accuracy)
        else:
            order = pareto_order(np.array([at_rung[t].minimised() for t in numbers]))
        keep = max(1, len(numbers) // self.eta)
        return order.index(numbers.index(trial)) >= keep

    def load(self, trial: int, reports: list[EpochReport]) -> None:
        """Put back what `trial` reported in an earlier session (no decision is taken)."""
        for r in reports:
            if r.epoch in self.rung_epochs:
                self.results.setdefault(r.epoch, {})[trial] = r

    def attr(self, trial: int) -> dict[str, list[float]]:
        """What `trial` reported at the rungs, as a JSON user attribute of its Optuna trial:
        {epoch: [val_accuracy, latency_ms, size_bytes]}."""
        return {
            str(epoch): [r.val_accuracy, r.latency_ms, r.size_bytes]
            for epoch, at_rung in sorted(self.results.items())
            if (r := at_rung.get(trial)) is not None
        }

    def load_attr(self, trial: int, attr: dict[str, list[float]]) -> None:
        """Put back what `attr` says `trial` reported (the inverse of `attr`)."""
        reports = [EpochReport(int(e), float(v), float(t), int(b)) for e, (v, t, b) in attr.items()]
        self.load(trial, reports)
