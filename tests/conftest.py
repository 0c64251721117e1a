"""Shared fixtures. Everything runs the real code paths, made small: 16x16 digits, a teacher
trained for two epochs, one distillation epoch per trial, small budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from automl.config import ExperimentConfig, validate_config
from automl.data import DataBundle
from automl.search import prepare
from teachers.cache import Teacher

torch.set_num_threads(2)


def tiny_raw(cache_dir: Path, out: Path | None = None, **search: Any) -> dict[str, Any]:
    """A small but complete experiment config, as the YAML a user would write."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "data": {"type": "digits", "image_size": 16},
        "teacher": {"model": "resnet18", "epochs": 2, "cache_dir": str(cache_dir)},
        "training": {"epochs": 1},
        "latency": {"warmup": 2, "repeats": 30},
        "search": {"budget": 4, "sampler": "random", **search},
    }
    if out is not None:
        raw["out"] = str(out)
    return raw


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("teachers")


@pytest.fixture(scope="session")
def tiny(teacher_cache) -> tuple[ExperimentConfig, DataBundle, Teacher]:
    """The tiny config with its data and (cached, once per session) teacher."""
    config = validate_config(tiny_raw(teacher_cache), "tiny")
    data, teacher, _ = prepare(config)
    return config, data, teacher


@pytest.fixture(scope="session")
def default_teacher(tmp_path_factory) -> tuple[ExperimentConfig, DataBundle, Teacher]:
    """The shipped default recipe (digits 32x32, resnet18, 30 epochs), really trained once."""
    from automl.config import load_config

    cache = tmp_path_factory.mktemp("default-teacher")
    config = load_config(None, {"teacher.cache_dir": str(cache), "device": "cpu"})
    data, teacher, _ = prepare(config)
    return config, data, teacher


@pytest.fixture(scope="session")
def searched_run(tiny, teacher_cache, tmp_path_factory) -> Path:
    """A finished tiny search (4 students, 2 distillation epochs each), before `report`."""
    from automl.search import run_search

    out = tmp_path_factory.mktemp("searched") / "tiny"
    raw = tiny_raw(teacher_cache, out, budget=4)
    raw["training"]["epochs"] = 2
    run_search(validate_config(raw, "test"))
    return out
