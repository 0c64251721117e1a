"""A reinforcement-learning controller as an Optuna sampler (`search.sampler: rl`).

The policy has one softmax per dimension over its choices (a choice dimension's values, an
int or stepped float dimension's grid, or `BINS` equal bins of any other float range, log
ones in log space, a value drawn uniformly inside the chosen bin). It is trained by REINFORCE
(Williams 1992) as the searches of the pruning guides are (AMC, He et al. 2018; HAQ, Wang et
al. 2019, both with DDPG over layers; this is the plain policy gradient over the per-stage
choices at once): after each finished trial every dimension's logits move by

    lr * advantage * (onehot(choice) - softmax(logits)),

where the reward is the trial's gain in hypervolume over the front of the trials that
finished before it, in a space where each objective is scaled to the range seen so far, and
the advantage is the reward less a running mean, divided by a running standard deviation
(clipped to 3). A trial that breaks a limit (`Trial.set_constraint`) earns `PENALTY`; one
stopped early earns nothing; a failed one is ignored.

The sampler keeps no state of its own that matters: before each trial it replays, in the
order they finished, the trials it has not learnt from, so a resumed search, or Tune's
OptunaSearch in a Ray driver, has the same policy. Single-objective studies work the same
way (the hypervolume of one objective is its best value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automl.pareto import hypervolume, non_dominated

BINS = 8  # of a float range without a step (and of an int range of more than MAX_GRID values)
MAX_GRID = 64
PENALTY = -0.05  # the reward of a trial that breaks a limit, in hypervolume units


@dataclass
class _Running:
    """Running mean and variance (Welford) of the rewards, for the advantage."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass
class _Policy:
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    rewards: _Running = field(default_factory=_Running)
    learnt: set[int] = field(default_factory=set)  # trial numbers already learnt from
    points: list[np.ndarray] = field(default_factory=list)  # finished trials, minimised


class ReinforceSampler(optuna.samplers.BaseSampler):
    """See the module docstring. `lr`: the logits' step size."""

    def __init__(self, seed: int | None = None, lr: float = 0.5) -> None:
        self._rng = np.random.RandomState(seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self.lr = lr
        self._policy = _Policy()

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def probabilities(self, name: str) -> np.ndarray | None:
        """The policy's current probabilities over `name`'s choices (None: not seen yet)."""
        logits = self._policy.logits.get(name)
        return None if logits is None else _softmax(logits)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution
    ) -> Any:
        self._learn(study)
        n = _choice_count(distribution)
        if n is None:
            return self._fallback.sample_independent(study, trial, name, distribution)
        logits = self._policy.logits.setdefault(name, np.zeros(n))
        if len(logits) != n:  # the dimension changed (a resumed run with another space)
            logits = self._policy.logits[name] = np.zeros(n)
        index = int(self._rng.choice(n, p=_softmax(logits)))
        return _value(distribution, index, n, self._rng)

    def _learn(self, study: optuna.Study) -> None:
        """Learn from every finished trial not learnt from yet, in the order they finished."""
        policy = self._policy
        finished = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.number not in policy.learnt and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ]
        finished.sort(key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
        signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        for t in finished:
            policy.learnt.add(t.number)
            reward = self._reward(t, signs)
            policy.rewards.add(reward)
            spread = policy.rewards.std
            if spread == 0:
                continue  # nothing to compare with yet
            advantage = float(np.clip((reward - policy.rewards.mean) / spread, -3, 3))
            for name, distribution in t.distributions.items():
                n = _choice_count(distribution)
                if n is None:
                    continue
                logits = policy.logits.get(name)
                if logits is None or len(logits) != n:
                    logits = policy.logits[name] = np.zeros(n)
                step = -_softmax(logits)
                step[_index(distribution, t.params[name], n)] += 1.0
                logits += self.lr * advantage * step

    def _reward(self, t: FrozenTrial, signs: np.ndarray) -> float:
        if t.state != TrialState.COMPLETE or t.values is None:
            return 0.0  # stopped early: judged weak at a rung
        if any(c > 0 for c in t.constraints.values()):
            return PENALTY
        point = np.asarray(t.values, dtype=float) * signs  # all minimised
        before = self._policy.points
        self._policy.points = [*before, point]
        if not before:
            return 0.0
        every = np.array(self._policy.points)
        low, high = every.min(axis=0), every.max(axis=0)
        scale = np.where(high > low, high - low, 1.0)
        ref = np.ones(len(point)) * 1.1  # just beyond the worst seen, after scaling

        def hv(points: np.ndarray) -> float:
            scaled = (points - low) / scale
            return hypervolume(scaled[non_dominated(scaled)], ref)

        return hv(every) - hv(np.array(before))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _grid_size(d: BaseDistribution) -> int | None:
    """How many of `d`'s own values the policy chooses among, or None when it chooses among
    `BINS` bins instead (a float range without a step, a log int range, or more than
    `MAX_GRID` values)."""
    if isinstance(d, CategoricalDistribution):
        return len(d.choices)
    if isinstance(d, IntDistribution) and not d.log:
        count = (d.high - d.low) // d.step + 1
    elif isinstance(d, FloatDistribution) and d.step is not None:
        count = round((d.high - d.low) / d.step) + 1
    else:
        return None
    return count if count <= MAX_GRID else None


def _choice_count(d: BaseDistribution) -> int | None:
    """How many choices the policy has for `d` (None: a distribution it does not handle)."""
    if not isinstance(d, CategoricalDistribution | IntDistribution | FloatDistribution):
        return None
    return _grid_size(d) or BINS


def _bounds(d: IntDistribution | FloatDistribution) -> tuple[float, float]:
    if d.log:
        return math.log(d.low), math.log(d.high)
    return float(d.low), float(d.high)


def _value(d: BaseDistribution, index: int, n: int, rng: np.random.RandomState) -> Any:
    """The value of choice `index` of `d`: a grid value, or a uniform draw inside bin `index`."""
    if isinstance(d, CategoricalDistribution):
        return d.choices[index]
    assert isinstance(d, IntDistribution | FloatDistribution)
    if _grid_size(d) is not None:
        value = d.low + index * d.step
        return int(value) if isinstance(d, IntDistribution) else float(min(value, d.high))
    lo, hi = _bounds(d)
    width = (hi - lo) / n
    x = rng.uniform(lo + index * width, lo + (index + 1) * width)
    x = math.exp(x) if d.log else x
    if isinstance(d, IntDistribution):
        steps = round((x - d.low) / d.step)
        return int(min(d.high, max(d.low, d.low + steps * d.step)))
    if d.step is not None:
        steps = round((x - d.low) / d.step)
        return float(min(d.high, max(d.low, d.low + steps * d.step)))
    return float(min(d.high, max(d.low, x)))


def _index(d: BaseDistribution, value: Any, n: int) -> int:
    """The choice of `d` that `value` falls in (the inverse of `_value`)."""
    if isinstance(d, CategoricalDistribution):
        return int(d.to_internal_repr(value))
    assert isinstance(d, IntDistribution | FloatDistribution)
    if _grid_size(d) is not None:
        return int(min(n - 1, max(0, round((value - d.low) / d.step))))
    lo, hi = _bounds(d)
    x = math.log(value) if d.log else float(value)
    return int(min(n - 1, max(0, math.floor((x - lo) / (hi - lo) * n))))
