"""Shared fixtures. Everything runs the real code paths, made small: 16x16 digits, a teacher
trained for six epochs (about 97% accurate), one distillation epoch per trial, small budgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from automl.config import ExperimentConfig, validate_config
from automl.experiment import Experiment, prepare

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run where CUDA is present and show as skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_raw(cache_dir: Path, out: Path | None = None, **search: Any) -> dict[str, Any]:
    """A small but complete experiment config, as the YAML a user would write."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "data": {"type": "digits", "image_size": 16},
        "teacher": {"model": "resnet18", "epochs": 6, "cache_dir": str(cache_dir)},
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


def cli(*args: Any, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` as a user runs it: a new process, from the checkout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_in_process(*args: Any) -> Any:
    """The same typer app in this process (no interpreter start-up): for the many bad-input
    checks. Returns click's Result: exit_code, stdout, stderr, exception."""
    from cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("teachers")


@pytest.fixture(scope="session")
def tiny(teacher_cache) -> Experiment:
    """The tiny config with its data and (cached, once per session) teacher."""
    return prepare(validate_config(tiny_raw(teacher_cache), "tiny"))


@pytest.fixture(scope="session")
def tiny_config(tiny) -> ExperimentConfig:
    return tiny.config


# searched_run's first trial: the space's smallest corner, 6-bit
ENQUEUED = {"blocks": "low", "channel_keep": "low", "bits": 6}


@pytest.fixture(scope="session")
def searched_run(tiny, teacher_cache, tmp_path_factory) -> Path:
    """A finished tiny search (4 students, 2 distillation epochs each, the first one ENQUEUED),
    before `report`. Weights stay at 8 bits or below, so every front model deploys as int8."""
    from automl.run.search import run_search

    out = tmp_path_factory.mktemp("searched") / "tiny"
    raw = tiny_raw(teacher_cache, out, budget=4)
    raw["training"]["epochs"] = 2
    raw["search_space"] = {"bits": {"type": "choice", "values": [6, 8]}}
    raw["search"]["enqueue"] = [ENQUEUED]
    run_search(validate_config(raw, "test"))
    return out


def make_arch(
    keep: list[float],
    blocks: list[int],
    bits: list[int],
    criterion: str = "l2",
    stem_head_bits: int = 8,
    **extra: Any,
):
    """An Architecture of the default techniques (depth, channels, weight_quant)."""
    from search_spaces import Architecture

    return Architecture.model_validate(
        {
            "stages": [
                {"channel_keep": k, "blocks": b, "bits": q}
                for k, b, q in zip(keep, blocks, bits, strict=True)
            ],
            "criterion": criterion,
            "stem_head_bits": stem_head_bits,
            **extra,
        }
    )


def teacher_figures():
    from automl.run.documents import TeacherFigures

    return TeacherFigures(
        model="resnet18",
        params=100,
        macs=1000,
        size_bytes=4000,
        latency_ms=2.0,
        val_accuracy=0.99,
        test_accuracy=0.98,
        fingerprint="f",
    )


def record(n: int, acc: float, ms: float, size: int, state: str = "COMPLETE"):
    """A trial record of a one-stage architecture with the given scores."""
    from automl.trial import TrialRecord, TrialResult

    result = TrialResult(
        val_accuracy=acc,
        test_accuracy=acc - 0.01,
        latency_ms=ms,
        size_bytes=size,
        params=10,
        macs=20,
        train_seconds=1.0,
        epochs=1,
    )
    return TrialRecord(n, state, make_arch([1], [1], [8]), result if state == "COMPLETE" else None)
