"""A technique in one file outside the package (tests/toy_techniques.py) goes through a whole
search and an export with no other file edited: the config lists its module under `plugins`
and its name under `search_space.techniques`."""

from __future__ import annotations

import csv
import json

import pytest

from automl.config import validate_config
from automl.deploy.export import export_trial
from automl.deploy.remeasure import MeasureSettings
from automl.run.finished import open_search_run
from automl.run.search import run_search
from tests.conftest import tiny_raw


@pytest.fixture(scope="module")
def plugin_run(tiny, teacher_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("plugin") / "run"
    raw = tiny_raw(teacher_cache, out, budget=3)
    raw["plugins"] = ["tests.toy_techniques"]
    raw["search_space"] = {
        "techniques": ["depth", "channels", "half_stages"],
        "half": [False, True, {"type": "choice", "values": [False, True]}, True],
    }
    summary = run_search(validate_config(raw, "test"))
    assert summary.completed == 3
    return out


def test_its_dimensions_are_searched_and_recorded(plugin_run):
    rows = list(csv.DictReader((plugin_run / "trials.csv").read_text().splitlines()))
    for r in rows:  # fixed per stage where the config fixed it, searched in stage 2
        assert (r["stage0.half"], r["stage1.half"], r["stage3.half"]) == ("False", "True", "True")
        assert r["stage2.half"] in {"False", "True"}
    assert not any(k.endswith(".bits") for k in rows[0])  # weight_quant is not enabled
    run = json.loads((plugin_run / "run.json").read_text())
    assert run["config"]["plugins"] == ["tests.toy_techniques"]
    assert run["config"]["search_space"]["techniques"] == ["depth", "channels", "half_stages"]


def test_its_size_accounting_and_card_reach_the_export(plugin_run, tmp_path):
    run = open_search_run(plugin_run)
    member = run.front[0]
    assert member.architecture.techniques == ("depth", "channels", "half_stages")
    card = export_trial(
        run, member.trial, tmp_path / "model", MeasureSettings(batch_sizes=(1,), rounds=1), "-"
    )
    assert card["format"] == "fp32"  # nothing quantizes to 8 bits
    half = card["compression"]["half_stages"]
    assert half["params"]["half"][1] is True and half["summary"]["fp16 stages"].startswith("n/y")
    assert "half_stages: the ONNX file stores those weights at fp32." in card["deployment"]["notes"]
    assert "fp16 stages" in (tmp_path / "model" / "card.md").read_text()
    # Packed: stages 1 and 3 count 16 bits per weight, so the student is smaller than the
    # fp32 ONNX file that ships it.
    assert card["metrics"]["packed_size_bytes"] < 0.95 * card["metrics"]["onnx_bytes"]
