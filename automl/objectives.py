"""The objectives of the search, defined once: Optuna's directions, Tune's metrics, the
hypervolume, pareto.json and the report all read them from here.

For Pareto maths every objective is turned into a fraction to minimise: `1 - val_accuracy`,
`latency_ms / teacher latency_ms`, `size_bytes / teacher size_bytes`. The reference point of
the hypervolume, (1, 1, 1), is then zero accuracy at the teacher's latency and size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Objective:
    name: str  # a field of TrialResult, pareto.json members and the teacher's figures
    direction: Literal["maximize", "minimize"]
    label: str  # for axes and tables, in the unit `scale` gives
    scale: float = 1.0  # shown value = value * scale

    @property
    def mode(self) -> Literal["max", "min"]:
        """Ray Tune's spelling of the direction."""
        return "max" if self.direction == "maximize" else "min"

    def normalised(self, value: float, teacher_value: float) -> float:
        """The objective as a fraction to minimise (see the module docstring)."""
        if self.direction == "maximize":
            return 1.0 - value
        return value / teacher_value

    def reference(self, teacher_value: float) -> float:
        """The reference point of the hypervolume, in the objective's own unit."""
        return 0.0 if self.direction == "maximize" else teacher_value


OBJECTIVES: tuple[Objective, ...] = (
    Objective("val_accuracy", "maximize", "validation accuracy"),
    Objective("latency_ms", "minimize", "latency (ms)"),
    Objective("size_bytes", "minimize", "size (kB, packed)", scale=1 / 1000),
)
NAMES = tuple(o.name for o in OBJECTIVES)
DIRECTIONS = [o.direction for o in OBJECTIVES]
REFERENCE_POINT = np.ones(len(OBJECTIVES))  # in the normalised space


def values(scores: Any) -> list[float]:
    """The objectives of one scored student (anything with the objective fields), in order."""
    return [float(getattr(scores, o.name)) for o in OBJECTIVES]


def normalised(scores: Sequence[Any], teacher: Any) -> np.ndarray:
    """(n, len(OBJECTIVES)): each student's objectives as fractions to minimise."""
    rows = [
        [o.normalised(getattr(s, o.name), getattr(teacher, o.name)) for o in OBJECTIVES]
        for s in scores
    ]
    return np.array(rows, dtype=float).reshape(-1, len(OBJECTIVES))


def normalised_space() -> str:
    """A description of the normalised space, for pareto.json and the report."""
    parts = [
        f"1 - {o.name}" if o.direction == "maximize" else f"{o.name} / teacher.{o.name}"
        for o in OBJECTIVES
    ]
    return f"[{', '.join(parts)}]"
