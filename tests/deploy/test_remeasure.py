"""`report`'s document logic on given timings: speed-ups, compression, failed checks, the knee
on deployed latency."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl.deploy.check import DeployedOnnx
from automl.deploy.remeasure import MeasureSettings, _document, deployed_latency
from automl.run.documents import DeployFailed, pareto_document
from tests.conftest import record, teacher_figures


def _deployed(name: str, onnx_bytes: int) -> DeployedOnnx:
    return DeployedOnnx(Path(name), "int8", onnx_bytes, 0.9, 0.9, False, 4 * onnx_bytes)


def test_document_adds_speedups_compression_and_the_knee():
    front = pareto_document(
        [record(0, 0.95, 1.0, 2000), record(1, 0.90, 0.5, 1000), record(2, 0.80, 0.2, 500)],
        teacher_figures(),
        str,
    )
    ms = {"teacher": 4.0, "trial_0000": 2.0, "trial_0001": 0.4, "trial_0002": 0.3}

    def latency_of(key):
        return {"torch": {"batch_1": 10 * ms[key]}, "onnxruntime": {"batch_1": ms[key]}}

    deployed = {
        "teacher": DeployedOnnx(Path("teacher.onnx"), "fp32", 4000, 0.99, 0.99, False, 4000),
        "trial_0000": _deployed("a", 1000),
        "trial_0001": _deployed("b", 500),
        "trial_0002": "the int8 ONNX model scores 0.5 against 0.8",
    }
    doc = _document(front, MeasureSettings(batch_sizes=(1,)), deployed, latency_of)
    a, b, c = doc.front
    assert a.speedup["onnxruntime"]["batch_1"] == 2.0 and b.speedup["torch"]["batch_1"] == 10.0
    assert a.compression == pytest.approx(4000 / 2000) and a.onnx_compression == 4.0
    assert isinstance(c.deployed, DeployFailed) and c.onnx_compression is None and not c.shippable
    assert deployed_latency(b) == 0.4 and deployed_latency(doc.teacher) == 4.0
    assert doc.knee_trial == 1  # balanced: 0.9 accuracy at a tenth of the teacher's latency
    assert doc.measurement.batch_sizes == [1] and doc.teacher.deployed.format == "fp32"
    assert [m.trial for m in doc.front] == [m.trial for m in front.front]  # membership kept
