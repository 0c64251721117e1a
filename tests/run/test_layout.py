"""The run directory's files: trials.csv, the front's weights, one name per trial."""

from __future__ import annotations

import csv

from automl.run.layout import RESULT_COLUMNS, RunDir, trial_key
from tests.conftest import record


def test_trials_csv_has_a_column_per_dimension_result_and_controller_field(tmp_path):
    run = RunDir(tmp_path)
    records = [record(0, 0.9, 1.0, 1000), record(1, 0.5, 1.0, 1000, state="FAIL")]
    records[1].error = "RuntimeError: boom"
    records[0].extra = {"node_id": "abc"}
    run.write_trials(records)
    rows = list(csv.DictReader(run.trials_csv.open()))
    assert list(rows[0])[:2] == ["number", "state"]
    assert list(rows[0])[-2:] == ["error", "rejected"]
    assert {"stage0.channel_keep", "stage0.bits", "criterion", "kd_alpha", "node_id"} <= set(
        rows[0]
    )
    assert "test_accuracy" not in rows[0] and set(RESULT_COLUMNS) <= set(rows[0])
    assert rows[0]["val_accuracy"] == "0.9" and rows[1]["val_accuracy"] == ""
    assert rows[1]["error"] == "RuntimeError: boom"
    assert run.read_trial_points() == [
        {"number": 0, **{k: float(rows[0][k]) for k in RESULT_COLUMNS}}
    ]


def test_weights_of_trials_that_leave_the_front_are_deleted(tmp_path):
    run = RunDir(tmp_path)
    run.create()
    for n in (1, 2, 12):
        run.weights_path(n).write_bytes(b"w")
        run.weights_path(n).with_suffix(".json").write_text("{}")
    run.prune_weights({2})
    assert sorted(p.name for p in run.models.iterdir()) == [
        "trial_0002.json",
        "trial_0002.safetensors",
    ]
    assert trial_key(12) == "trial_0012" and run.weights_name(12) == "models/trial_0012.safetensors"
