"""The deployed form checks itself: ONNX export, int8 static quantization, accuracy against
PyTorch, nothing left behind on failure. Real exports, real ONNX Runtime sessions, a trained
teacher (the tiny one, about 97% accurate) made 8-bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from automl.deploy import check as check_module
from automl.deploy.check import ExportCheckFailed, calibration_images, deploy_onnx
from automl.deploy.onnx import ort_logits, session
from automl.student.build import build_student, deploy_form, fold
from tests.conftest import make_arch


@pytest.fixture(scope="module")
def trained_student(tiny):
    """The trained tiny teacher with 8-bit weights folded in: an accurate 8-bit model."""
    stages = tiny.stages
    arch = make_arch([1.0] * 4, [2] * 4, [8] * 4)
    data = tiny.data
    model = build_student(tiny.teacher.model, stages, arch, (data.train.x[:64], data.train.y[:64]))
    fold(model.model)
    return model.model.eval(), arch, data


def test_int8_export_is_small_and_scores_like_pytorch(trained_student, tmp_path):
    model, arch, data = trained_student
    dep = deploy_onnx(
        model, deploy_form(arch), data, tmp_path / "model.onnx", keep_fp32=tmp_path / "fp32.onnx"
    )
    assert dep.format == "int8" and dep.path.is_file() and (tmp_path / "fp32.onnx").is_file()
    assert dep.onnx_bytes <= 0.30 * dep.fp32_onnx_bytes
    assert abs(dep.onnx_test_accuracy - dep.torch_test_accuracy) <= 0.005
    assert dep.torch_test_accuracy > 0.9  # a real, working model, not chance (0.1)
    ops = {n.op_type for n in onnx.load(str(dep.path)).graph.node}
    assert {
        "QuantizeLinear",
        "DequantizeLinear",
        "Conv",
    } <= ops  # integer weights ONNX Runtime runs


def test_fp32_export_matches_pytorch_logits(tiny, tmp_path):
    teacher, data = tiny.teacher.model.eval(), tiny.data
    dep = deploy_onnx(teacher, deploy_form(None), data, tmp_path / "teacher.onnx")
    assert dep.format == "fp32" and dep.onnx_bytes == dep.fp32_onnx_bytes
    x = data.test.x[:16]
    with torch.no_grad():
        expected = teacher(x).numpy()
    np.testing.assert_allclose(
        ort_logits(session(dep.path), x.numpy()), expected, rtol=1e-3, atol=1e-3
    )


def test_a_failed_check_leaves_nothing_behind(trained_student, tmp_path, monkeypatch):
    model, arch, data = trained_student
    monkeypatch.setattr(check_module, "MAX_ACCURACY_GAP", -1.0)  # no model can pass
    with pytest.raises(ExportCheckFailed, match="not exported") as info:
        deploy_onnx(model, deploy_form(arch), data, tmp_path / "model.onnx")
    assert "reduce_range" in str(info.value)  # the int8 fallback was tried before failing
    assert list(tmp_path.iterdir()) == []


def test_calibration_uses_seeded_training_images_only(tiny):
    data = tiny.data
    a, b = calibration_images(data, 3, n=16), calibration_images(data, 3, n=16)
    assert np.array_equal(a, b) and not np.array_equal(a, calibration_images(data, 4, n=16))
    train = {tuple(x.flatten().tolist()) for x in data.train.x.numpy()}
    assert all(tuple(x.flatten().tolist()) in train for x in a)
