"""The library face (`automl.api`) over the real code paths: a search from Python, the run as
an object, a model picked and exported; the CLI and the API write the same run."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import automl
from automl.errors import UserError
from automl.training import accuracy
from tests.conftest import cli_in_process, tiny_raw, write_config

TIMED = {"latency_ms", "train_seconds"}  # columns that differ between two runs of one trial


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "trials.csv").open(newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMED} for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def api_run(tiny, teacher_cache, tmp_path_factory) -> automl.Run:
    raw = tiny_raw(teacher_cache, budget=8)  # budget and out come from the call
    return automl.search(raw, out=tmp_path_factory.mktemp("api") / "run", budget=2, seed=3)


def test_a_search_from_python_returns_its_run(api_run, tiny):
    assert api_run.summary is not None and api_run.summary.completed == 2
    assert api_run.config.search.budget == 2 and api_run.config.seed == 3
    assert api_run.teacher.val_accuracy == tiny.teacher.card.val_accuracy
    rows = api_run.trials
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    on_disk = json.loads((api_run.path / "pareto.json").read_text())
    assert [m.trial for m in api_run.front] == [m["trial"] for m in on_disk["front"]]
    again = automl.open_run(api_run.path)
    assert again.front == api_run.front and again.hypervolume == api_run.hypervolume


def test_the_cli_and_the_api_write_the_same_run(api_run, teacher_cache, tmp_path):
    """The same config and seed through `cli.py search` and `automl.search`: the same
    config, recipe, data and teacher in run.json, and the same trials (timings aside)."""
    out = tmp_path / "cli_run"
    config = write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache, budget=8))
    result = cli_in_process("search", "--config", config, "--out", out, "--budget", 2, "--seed", 3)
    assert result.exit_code == 0, result.output
    by_cli, by_api = (json.loads((p / "run.json").read_text()) for p in (out, api_run.path))
    for doc in (by_cli, by_api):
        del doc["config"]["out"], doc["sessions"], doc["wall_seconds"], doc["teacher"]["latency_ms"]
    assert by_cli == by_api
    assert _rows(out) == _rows(api_run.path)


def test_resume_raises_the_budget_and_refuses_a_lower_one(api_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(api_run.path, copy)
    with pytest.raises(UserError, match="below the run's budget of 2 trials"):
        automl.resume(copy, budget=1)
    with pytest.raises(UserError, match=r"seed is 3 in the run, 4 here"):
        automl.resume(copy, budget=3, seed=4)
    run = automl.resume(copy, budget=3)
    assert run.summary is not None and run.summary.completed == 3
    assert len(run.trials) == 3 and _rows(copy)[:2] == _rows(api_run.path)


def test_pick_gives_the_model_and_exports_it(searched_run, tiny, tmp_path):
    run = automl.open_run(shutil.copytree(searched_run, tmp_path / "run"))
    best = max(run.front, key=lambda m: m.val_accuracy)
    picked = run.pick(min_accuracy=best.val_accuracy, measure=automl.MeasureOptions(8, 1))
    assert picked.trial == best.trial  # the most accurate, and none other meets its accuracy
    model = picked.model
    assert isinstance(model, torch.nn.Module) and not model.training
    test = accuracy(model, tiny.data.test, torch.device("cpu"))
    assert abs(test - picked.member.test_accuracy) <= 0.01
    card = picked.export(tmp_path / "model")
    assert picked.folder == tmp_path / "model" and card["trial"] == picked.trial
    assert {"model.onnx", "model.safetensors", "card.json"} <= {
        p.name for p in picked.folder.iterdir()
    }
    with pytest.raises(automl.NoModelFits, match="no front model meets val accuracy >= 1"):
        run.pick(min_accuracy=1.0)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: automl.search(teacher=torch.nn.Linear(2, 2)), "teacher: an nn.Module is not"),
        (lambda: automl.search(budgett=3), "budgett= (budgett): unknown key"),
        (lambda: automl.search({"search": {"budget": 0}}), "search.budget: Input should be"),
        (lambda: automl.search(budget=-1), "budget= (search.budget): Input should be greater"),
        (lambda: automl.open_run("/nonexistent/run"), "no run directory at /nonexistent/run"),
        (lambda: automl.MeasureOptions(batch=0), "batch: 0 is not allowed; use 1 to 1024"),
        (
            lambda: automl.check_constraints(automl.api.Constraints(math.nan)),
            "--max-latency-ms must be a positive number, got nan",
        ),
    ],
)
def test_bad_arguments_are_one_user_error(call, needle):
    with pytest.raises(UserError) as caught:
        call()
    assert needle in str(caught.value)


def test_the_package_exports_the_api():
    """`automl.X` is `automl.api.X` for every public name, so the two lists cannot drift."""
    public = set(automl.api.__all__) - {"FLAGS"}
    assert set(automl.__all__) - {"__version__"} == public
    assert all(getattr(automl, name) is getattr(automl.api, name) for name in public)
