"""How long a search will take, estimated before it starts from measured training steps.

The space's two corners are built and trained for a few steps each with the search's own
recipe (data, batch size, distillation, augmentation, device): the smallest student, every
range at its low end and the first value of every choice, and the largest, every range at
its high end and the last choice. A trial's training then takes its steps per epoch times
the epochs; evaluation and latency measurement come on top, so the figures are a floor.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from automl.config import ExperimentConfig
from automl.training import fit
from automl.trial import TrialContext
from search_spaces import Architecture
from search_spaces.space import BoundSearchSpace

STEPS = 4  # measured training steps per corner


class _End:
    """A suggester that gives every dimension one of its ends (see the module docstring)."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return low + (high - low) // step * step if self.high else low

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        if not self.high:
            return low
        return high if step is None else low + math.floor((high - low) / step + 1e-9) * step

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return choices[-1] if self.high else choices[0]


def corner(space: BoundSearchSpace, high: bool) -> Architecture:
    """The space's smallest (`high=False`) or largest student."""
    return space.sample(_End(high))


@dataclass(frozen=True)
class Estimate:
    """Training seconds per trial of the smallest and the largest student, and the trials left."""

    smallest_s: float
    largest_s: float
    trials: int

    def describe(self, at_once: int | None = 1) -> str:
        """One line for the user; `at_once` trials run side by side (None: unknown, so no
        total is given)."""
        low, high = sorted((self.smallest_s, self.largest_s))
        line = (
            f"{self.trials} trials to run; training alone takes {duration(low)} (the space's "
            f"smallest student) to {duration(high)} (its largest) per trial, measured over "
            f"{STEPS} steps each"
        )
        if at_once is None:
            return line
        rounds = math.ceil(self.trials / at_once)
        side = f" with {at_once} at once" if at_once > 1 else ""
        return (
            f"{line}: about {duration(low * rounds)} to {duration(high * rounds)} in all"
            f"{side}, plus evaluation"
        )


def at_once(config: ExperimentConfig) -> int | None:
    """Trials that run side by side: one with Optuna, Ray's max_concurrent (None: unknown)."""
    return 1 if config.search.backend == "optuna" else config.ray.max_concurrent


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def step_seconds(arch: Architecture, ctx: TrialContext, steps: int = STEPS) -> float:
    """Seconds per training step of `arch` with the search's recipe, over `steps` steps of a
    real `fit` (the first step, with its allocations, included)."""
    data, t = ctx.data, ctx.training
    model = ctx.build(arch).model
    pool = ctx.subset if ctx.subset is not None else torch.arange(len(data.train))
    indices = pool[: steps * t.batch_size]
    loss_fn = ctx.distillation(arch.kd_temperature, arch.kd_alpha)
    settings = ctx.fit_settings(epochs=1)
    start = time.perf_counter()
    fit(
        model,
        data.train,
        loss_fn,
        settings,
        ctx.device,
        0,
        augment=ctx.augmenter(),
        indices=indices,
    )
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return (time.perf_counter() - start) / math.ceil(len(indices) / t.batch_size)


def estimate(space: BoundSearchSpace, ctx: TrialContext, trials: int) -> Estimate:
    """The training time of the search's `trials` left, from the two corners' steps."""
    t = ctx.training
    images = len(ctx.subset) if ctx.subset is not None else len(ctx.data.train)
    steps = math.ceil(images / t.batch_size) * t.epochs
    small, large = (step_seconds(corner(space, high), ctx) * steps for high in (False, True))
    return Estimate(small, large, trials)
