"""run.json and pareto.json as typed documents: the front and hypervolume they hold, round
trips, clear errors, and the upgrade of documents written before techniques were plugins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automl.errors import UserError
from automl.objectives import OBJECTIVES, REFERENCE_POINT
from automl.pareto import hypervolume, non_dominated
from automl.run.documents import (
    FORMAT,
    ParetoDocument,
    RunDocument,
    front_points,
    pareto_document,
    read_document,
    write_document,
)
from tests.conftest import record, teacher_figures

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy_run_v1"
TEACHER = teacher_figures()


def test_the_front_and_its_hypervolume_follow_the_objectives():
    records = [
        record(0, 0.90, 1.0, 1000),
        record(1, 0.95, 1.5, 1500),
        record(2, 0.85, 1.2, 1200),  # dominated by 0
        record(3, 0.80, 0.5, 3000),
        record(4, 0.99, 0.1, 10, state="FAIL"),  # failed: never on the front
    ]
    doc = pareto_document(records, TEACHER, lambda n: f"models/trial_{n}.safetensors")
    assert [m.trial for m in doc.front] == [0, 1, 3]
    points = front_points(doc)
    assert np.allclose(points[0], [0.10, 0.5, 0.25])  # [1 - acc, ms / 2.0, size / 4000]
    assert sorted(non_dominated(points).tolist()) == [0, 1, 2]
    assert doc.hypervolume == pytest.approx(hypervolume(points, REFERENCE_POINT))
    assert doc.hypervolume > 0
    assert doc.objectives == {o.name: o.direction for o in OBJECTIVES}
    assert doc.reference_point == {"val_accuracy": 0.0, "latency_ms": 2.0, "size_bytes": 4000}
    assert doc.front[0].weights == "models/trial_0.safetensors"


def test_documents_round_trip_and_bad_files_are_user_errors(tmp_path):
    doc = pareto_document([record(0, 0.9, 1.0, 1000)], TEACHER, str)
    path = tmp_path / "pareto.json"
    write_document(path, doc)
    again = read_document(path, ParetoDocument)
    assert again == doc and again.format == FORMAT
    assert json.loads(path.read_text())["front"][0]["architecture"]["techniques"]
    path.write_text("{not json")
    with pytest.raises(UserError, match=r"is not valid JSON"):
        read_document(path, ParetoDocument)
    path.write_text(json.dumps({"format": 2, "front": []}))
    with pytest.raises(UserError, match=r"is not a ParetoDocument of this tool .*teacher"):
        read_document(path, ParetoDocument)
    with pytest.raises(UserError, match=r"is missing"):
        read_document(tmp_path / "none.json", RunDocument)


def test_documents_of_format_1_are_upgraded_when_read():
    run = read_document(LEGACY / "run.json", RunDocument)
    pareto = read_document(LEGACY / "pareto.json", ParetoDocument)
    assert run.format == pareto.format == 1
    assert run.config.search_space.techniques == ("depth", "channels", "weight_quant")
    assert run.config.teacher.model == "mobilenetv3_small_050"
    raw = json.loads((LEGACY / "pareto.json").read_text())["front"][0]["architecture"]
    member = pareto.front[0]
    # the flat form, read back into techniques; act_bits, quantizer, block_choice,
    # channel_schedule and kd_feature_weight came later, and old students have fp32
    # activations, min-max scales, their last blocks cut, channels removed before training
    # and logits-only distillation
    later = {
        "act_bits": 32,
        "quantizer": "minmax",
        "block_choice": "last",
        "channel_schedule": "one_shot",
        "kd_feature_weight": 0.0,
    }
    assert member.architecture.flat() == {**raw, **later}
    assert member.deployed.format == "int8" and member.measured_latency_ms["torch"]
    assert pareto.knee_trial == 1 and pareto.measurement.rounds == 1


def test_format_2_runs_keep_the_split_and_teacher_of_their_search_seed(tmp_path):
    """Before format 3 the search seed also split the data and seeded the teacher."""
    raw = json.loads((LEGACY / "run.json").read_text())
    raw["format"] = 2
    raw["config"]["seed"] = 3
    raw["config"]["teacher"]["augment_shift"] = 2
    raw["config"]["search_space"]["techniques"] = ["depth", "channels", "weight_quant"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(raw))
    config = read_document(path, RunDocument).config
    assert config.data.split_seed == 3 and config.teacher.seed == 3 and config.seed == 3
    assert not config.data.augment.enabled


def test_runs_before_format_4_go_on_timing_pytorch(tmp_path):
    """Format 4 times the search on ONNX Runtime by default; an older run timed PyTorch eager,
    and a resume must compare like with like."""
    raw = json.loads((LEGACY / "run.json").read_text())
    raw["format"] = 3
    raw["config"]["search_space"]["techniques"] = ["depth", "channels", "weight_quant"]
    raw["config"]["teacher"].pop("augment_shift", None)  # gone by format 3
    path = tmp_path / "run.json"
    path.write_text(json.dumps(raw))
    assert read_document(path, RunDocument).config.latency.runtime == "torch"
    assert read_document(LEGACY / "run.json", RunDocument).config.latency.runtime == "torch"
    raw["format"] = 4
    path.write_text(json.dumps(raw))
    assert read_document(path, RunDocument).config.latency.runtime == "onnxruntime"
