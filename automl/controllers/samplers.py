"""Optuna samplers, registered by name (`search.sampler`); adding one is one entry here.

Each entry makes a sampler from a seed. Both controllers use them: the local one directly,
the Ray one through Tune's OptunaSearch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import optuna

from automl.controllers.rl_sampler import ReinforceSampler

SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    # multivariate: one joint density over all dimensions instead of one per dimension
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=20),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    # REINFORCE over the per-stage choices, rewarded by hypervolume gain (rl_sampler.py)
    "rl": lambda seed: ReinforceSampler(seed=seed),
}


def list_samplers(pattern: str = "*") -> list[str]:
    return sorted(n for n in SAMPLERS if fnmatch.fnmatch(n, pattern))


def create_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    try:
        make = SAMPLERS[name]
    except KeyError:
        registered = ", ".join(list_samplers())
        raise ValueError(f"unknown sampler {name!r}; registered: {registered}") from None
    return make(seed)
