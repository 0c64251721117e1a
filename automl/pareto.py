"""Pareto logic as small pure functions over arrays of objectives, all to be minimised.

Callers turn their objectives into minimisation form first: the search uses
(1 - val_accuracy, latency_ms / teacher latency_ms, size_bytes / teacher size_bytes).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import kendalltau


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when `a` is no worse than `b` in every objective and better in one."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Indices of the points (n, m) that no other point dominates; duplicates all stay."""
    points = np.asarray(points, dtype=float)
    keep = [
        i
        for i, p in enumerate(points)
        if not np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1))
    ]
    return np.asarray(keep, dtype=int)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by `points` (n, m) and bounded by `reference` (m,), exact.

    Recursive slicing over the last objective: fine for the fronts of a search
    (tens of points, three objectives). Points not better than the reference in
    every objective add nothing.
    """
    points = np.asarray(points, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if len(points) == 0:
        return 0.0
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    order = np.argsort(points[:, -1])
    points = points[order]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else reference[-1]
        depth = upper - points[i, -1]
        if depth > 0:
            volume += depth * hypervolume(points[: i + 1, :-1], reference[:-1])
    return float(volume)


def knee_point(points: np.ndarray) -> int:
    """Index of the point nearest the ideal (the per-objective minimum) after scaling each
    objective to [0, 1] over `points`; a common single pick from a front."""
    points = np.asarray(points, dtype=float)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (points - low) / span
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def rank_correlation(a: list[float], b: list[float]) -> float | None:
    """Kendall's tau-b of two rankings of the same items; None when it is undefined (fewer
    than two items, or one side without any spread)."""
    if len(a) < 2:
        return None
    tau = float(kendalltau(a, b).statistic)
    return None if math.isnan(tau) else round(tau, 4)
