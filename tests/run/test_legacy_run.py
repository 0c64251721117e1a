"""A run directory written before techniques were plugins (tests/fixtures/legacy_run_v1, made
by the code of that time) opens, exports a model and resumes with this version."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from automl.deploy.export import export_trial
from automl.deploy.remeasure import MeasureSettings
from automl.run.finished import open_search_run
from automl.run.search import resume_config, run_search

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy_run_v1"


@pytest.fixture
def legacy(tmp_path, teacher_cache) -> Path:
    """A copy, its teacher cache pointed at this session's cache (a run moved to a machine
    whose cache is elsewhere; the teacher is trained there on first use)."""
    run = tmp_path / "legacy"
    shutil.copytree(LEGACY, run, ignore=shutil.ignore_patterns("README.md"))
    doc = json.loads((run / "run.json").read_text())
    doc["config"]["teacher"]["cache_dir"] = str(teacher_cache)
    (run / "run.json").write_text(json.dumps(doc))
    return run


def test_it_opens_and_exports_a_front_model(legacy, tmp_path):
    run = open_search_run(legacy)
    assert [m.trial for m in run.front] == [1, 2]
    assert run.front[0].architecture.techniques == ("depth", "channels", "weight_quant")
    card = export_trial(
        run, 1, tmp_path / "model", MeasureSettings(batch_sizes=(1,), rounds=1), "-"
    )
    assert card["format"] == "int8" and card["compression"]["weight_quant"]["params"]["bits"]
    assert abs(card["metrics"]["onnx_test_accuracy"] - card["metrics"]["test_accuracy"]) <= 0.005


def test_it_resumes_and_keeps_its_trials(legacy):
    before = list(csv.DictReader((legacy / "trials.csv").open()))
    summary = run_search(resume_config(legacy, budget=4), resume=True)
    assert summary.completed == 4
    after = list(csv.DictReader((legacy / "trials.csv").open()))
    for old, new in zip(before, after, strict=False):
        assert {k: v for k, v in new.items() if k in old} == old
    doc = json.loads((legacy / "run.json").read_text())
    assert doc["format"] == 4 and len(doc["sessions"]) == 2
    assert doc["sessions"][0].get("sampler") is None and doc["sessions"][1]["sampler"]
