from __future__ import annotations

import itertools

import numpy as np
import pytest

from automl.pareto import dominates, hypervolume, knee_point, non_dominated


def test_dominance_and_front():
    pts = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [2, 2], [6, 6]])
    assert dominates(pts[1], pts[3]) and not dominates(pts[1], pts[4])
    assert non_dominated(pts).tolist() == [0, 1, 2, 4]


def test_hypervolume_exact_small_cases():
    ref = np.array([1.0, 1.0, 1.0])
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), ref) == pytest.approx(0.125)
    two = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    assert hypervolume(two, ref) == pytest.approx(0.25 + 0.25 - 0.125)
    assert hypervolume(np.array([[1.2, 0.1, 0.1]]), ref) == 0.0
    assert hypervolume(np.empty((0, 3)), ref) == 0.0


def test_hypervolume_matches_a_grid_count():
    rng = np.random.default_rng(0)
    pts = rng.random((12, 3))
    ref = np.ones(3)
    n = 40
    centres = (np.arange(n) + 0.5) / n
    grid = np.array(list(itertools.product(centres, repeat=3)))
    dominated = np.zeros(len(grid), dtype=bool)
    for p in pts:
        dominated |= np.all(grid >= p, axis=1)
    assert hypervolume(pts, ref) == pytest.approx(dominated.mean(), abs=0.02)


def test_knee_point_is_the_balanced_one():
    pts = np.array([[0.0, 1.0], [0.3, 0.3], [1.0, 0.0]])
    assert knee_point(pts) == 1
