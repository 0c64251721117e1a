"""The REINFORCE sampler: it learns which choices pay, its policy is rebuilt from the study
alone, and its choices map to values and back."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.controllers.rl_sampler import (
    PENALTY,
    ReinforceSampler,
    _choice_count,
    _index,
    _value,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> tuple[float, float]:
    """Two objectives to minimise; `width` trades one against the other, `kind` 'good' is
    better in both whatever the width: a policy should learn to draw it."""
    kind = trial.suggest_categorical("kind", ["bad", "good", "worse", "poor"])
    width = trial.suggest_float("width", 0.0, 1.0)
    penalty = {"good": 0.0, "bad": 0.3, "poor": 0.4, "worse": 0.5}[kind]
    return width + penalty, 1.0 - width + penalty


def test_the_policy_learns_to_draw_the_choice_that_pays():
    sampler = ReinforceSampler(seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=80)
    p = sampler.probabilities("kind")
    assert p is not None and p[1] == p.max() and p[1] > 0.5, p  # 'good'; uniform is 0.25
    late = [t.params["kind"] for t in study.trials[40:]]
    assert late.count("good") / len(late) > 0.5
    random = optuna.create_study(
        directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    random.optimize(objective, n_trials=80)
    assert [t.params["kind"] for t in random.trials[40:]].count("good") < late.count("good")


def test_a_new_sampler_on_the_same_study_has_the_same_policy():
    first, storage = ReinforceSampler(seed=1), optuna.storages.InMemoryStorage()
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=first, storage=storage)
    study.optimize(objective, n_trials=25)
    resumed = ReinforceSampler(seed=99)
    resumed_study = optuna.load_study(study_name=study.study_name, storage=storage)
    resumed_study.sampler = resumed
    for s in (study, resumed_study):  # the policy learns from finished trials as it samples
        s.ask().suggest_categorical("kind", ["bad", "good", "worse", "poor"])
    assert not np.allclose(first.probabilities("kind"), 0.25)  # it has learnt something
    for name in ("kind", "width"):
        assert np.allclose(first.probabilities(name), resumed.probabilities(name))


def test_a_trial_that_breaks_a_limit_is_penalised():
    sampler = ReinforceSampler(seed=0)
    study = optuna.create_study(directions=["minimize"], sampler=sampler)
    for value, broken in ((1.0, False), (0.5, True)):
        trial = study.ask()
        trial.suggest_categorical("kind", ["a", "b"])
        trial.set_constraint("size_kb", 5.0 if broken else -1.0)
        study.tell(trial, value)
    frozen = study.trials[1]
    assert sampler._reward(frozen, np.ones(1)) == PENALTY


@pytest.mark.parametrize(
    "distribution",
    [
        CategoricalDistribution([4, 6, 8, 32]),
        IntDistribution(1, 3),
        IntDistribution(1, 1000),
        IntDistribution(1, 1000, log=True),
        FloatDistribution(0.125, 1.0, step=0.125),
        FloatDistribution(0.3, 1.0),
        FloatDistribution(1e-4, 1e-1, log=True),
    ],
)
def test_every_choice_maps_to_a_value_that_maps_back(distribution):
    n = _choice_count(distribution)
    assert n is not None and 2 <= n <= 64
    rng = np.random.RandomState(0)
    for index in range(n):
        for _ in range(5):
            value = _value(distribution, index, n, rng)
            assert distribution._contains(distribution.to_internal_repr(value))
            assert _index(distribution, value, n) == index
