"""Structured channel pruning with torch-pruning (DepGraph): channels are removed physically.

Criteria are registered by name. Each gives a torch-pruning importance; those that
need gradients (Taylor) say so, and the caller runs one backward pass first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from automl.stages import Stage, stage_of_modules


@dataclass(frozen=True)
class Criterion:
    make: Callable[[], tp.importance.Importance]
    needs_gradients: bool = False


_CRITERIA: dict[str, Criterion] = {
    "l2": Criterion(lambda: tp.importance.MagnitudeImportance(p=2)),
    "l1": Criterion(lambda: tp.importance.MagnitudeImportance(p=1)),
    "bn_scale": Criterion(tp.importance.BNScaleImportance),
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


def prune_channels(
    model: nn.Module,
    stages: list[Stage],
    keep: list[float],
    criterion: str,
    calibration: tuple[torch.Tensor, torch.Tensor],
    round_to: int = 4,
) -> None:
    """Remove output channels in place so that stage i keeps about `keep[i]` of its channels.

    The classifier's outputs are never pruned. Modules outside every stage take the
    ratio of the nearest stage (the stem the first, the head the last), since
    residual connections tie their channels to that stage's. `calibration` is an
    (inputs, labels) batch: the trace input, and the loss for gradient criteria.
    """
    if all(k >= 1.0 for k in keep):
        return
    spec = get_criterion(criterion)
    owner = stage_of_modules(model, stages)
    ratios = {
        module: 1.0 - keep[owner[name]]
        for name, module in model.named_modules()
        if name in owner and isinstance(module, nn.Conv2d | nn.Linear)
    }
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    inputs, labels = calibration
    pruner = tp.pruner.MetaPruner(
        model,
        inputs[:1],
        importance=spec.make(),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=[classifier] if isinstance(classifier, nn.Module) else [],
        round_to=round_to,
    )
    if spec.needs_gradients:
        model.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
