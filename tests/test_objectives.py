"""The one definition of the objectives and what reads it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from automl.controllers.ray_backend import MODES
from automl.objectives import DIRECTIONS, NAMES, OBJECTIVES, normalised, normalised_space, values


def test_objectives_drive_directions_modes_and_the_normalised_space():
    assert NAMES == ("val_accuracy", "latency_ms", "size_bytes")
    assert DIRECTIONS == ["maximize", "minimize", "minimize"] and MODES == ["max", "min", "min"]
    assert normalised_space() == (
        "[1 - val_accuracy, latency_ms / teacher.latency_ms, size_bytes / teacher.size_bytes]"
    )
    teacher = SimpleNamespace(val_accuracy=0.99, latency_ms=2.0, size_bytes=400)
    student = SimpleNamespace(val_accuracy=0.9, latency_ms=1.0, size_bytes=100)
    assert values(student) == [0.9, 1.0, 100.0]
    assert np.allclose(normalised([student, teacher], teacher), [[0.1, 0.5, 0.25], [0.01, 1, 1]])
    assert [o.reference(getattr(teacher, o.name)) for o in OBJECTIVES] == [0.0, 2.0, 400]
