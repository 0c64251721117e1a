"""Channel importance criteria for structured pruning, registered by name.

Each gives a torch-pruning importance; those that need gradients (Taylor) say so, and the
pruner runs one backward pass on the calibration batch first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch_pruning as tp


@dataclass(frozen=True)
class Criterion:
    make: Callable[[], tp.importance.Importance]
    needs_gradients: bool = False


_CRITERIA: dict[str, Criterion] = {
    "l2": Criterion(lambda: tp.importance.MagnitudeImportance(p=2)),
    "l1": Criterion(lambda: tp.importance.MagnitudeImportance(p=1)),
    "bn_scale": Criterion(tp.importance.BNScaleImportance),
    # He et al. 2019: the filters nearest the geometric median of their layer are the most
    # replaceable by the others, whatever their norm
    "fpgm": Criterion(tp.importance.FPGMImportance),
    "taylor": Criterion(tp.importance.TaylorImportance, needs_gradients=True),
    "random": Criterion(tp.importance.RandomImportance),
}


def list_criteria(pattern: str = "") -> list[str]:
    return sorted(name for name in _CRITERIA if pattern in name)


def get_criterion(name: str) -> Criterion:
    try:
        return _CRITERIA[name]
    except KeyError:
        raise ValueError(f"unknown pruning criterion {name!r}; known: {list_criteria()}") from None


def known_criterion(name: str) -> str:
    """A pydantic validator: `name` when it is a registered criterion."""
    get_criterion(name)
    return name
