"""Every registered sampler drives a real search, and the search records the sampler that
drew its trials (the live study's sampler, not the configured name)."""

from __future__ import annotations

import json

import optuna
import pytest

from automl.config import validate_config
from automl.controllers.samplers import SAMPLERS, create_sampler, list_samplers
from automl.run.search import run_search
from tests.conftest import tiny_raw


@pytest.mark.parametrize("name", list_samplers())
def test_the_configured_sampler_is_the_one_used(tiny, teacher_cache, tmp_path, name):
    config = validate_config(tiny_raw(teacher_cache, tmp_path / name, budget=2, sampler=name), "t")
    assert run_search(config).completed == 2
    session = json.loads((tmp_path / name / "run.json").read_text())["sessions"][-1]
    assert session["sampler"] == type(create_sampler(name, 0)).__name__


def test_samplers_are_seeded_and_unknown_names_list_the_registered():
    assert set(list_samplers()) == set(SAMPLERS) and list_samplers("n*") == ["nsga2"]
    for name in list_samplers():
        draws = []
        for _ in range(2):
            study = optuna.create_study(sampler=create_sampler(name, 7))
            draws.append(study.ask().suggest_float("x", 0, 1))
        assert draws[0] == draws[1]
    with pytest.raises(ValueError, match="registered: nsga2, random, rl, tpe"):
        create_sampler("grid", 0)
