"""Opening a finished run: what is missing or does not match is a clear UserError."""

from __future__ import annotations

import json
import shutil

import pytest

from automl.errors import UserError
from automl.run.finished import open_search_run


def test_a_finished_run_opens_and_its_front_loads(searched_run):
    run = open_search_run(searched_run)
    data = run.load_data()
    model, arch = run.load_model(run.front[0], data)
    assert arch == run.front[0].architecture and model(data.test.x[:2]).shape == (2, 10)
    assert run.trial_seed(5) == run.config.seed + 5


def test_what_is_missing_or_changed_is_named(searched_run, tmp_path):
    with pytest.raises(UserError, match=r"no run directory"):
        open_search_run(tmp_path / "none")
    run_path = tmp_path / "run"
    shutil.copytree(searched_run, run_path)
    run = open_search_run(run_path)
    with pytest.raises(UserError, match=r"trial 9999 is not on the Pareto front .* front trials:"):
        run.member(9999)
    (run_path / run.front[0].weights).unlink()
    with pytest.raises(UserError, match=r"weights of trial .* are missing"):
        run.load_model(run.front[0], run.load_data())
    doc = json.loads((run_path / "run.json").read_text())
    doc["data"]["fingerprint"] = "0000"
    (run_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"the data found now differ from the data of run"):
        open_search_run(run_path).load_data()
    (run_path / "pareto.json").unlink()
    with pytest.raises(UserError, match=r"pareto.json is missing: .* not a finished search run"):
        open_search_run(run_path)
