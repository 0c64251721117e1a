"""The deployed form checks itself: ONNX export, int8 static quantization, accuracy against
PyTorch, nothing left behind on failure. Real exports, real ONNX Runtime sessions, a trained
teacher (the tiny one, about 97% accurate) made 8-bit."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
import pytest
import torch

from automl.data import Split
from automl.deploy import check as check_module
from automl.deploy.check import (
    ExportCheckFailed,
    Parity,
    calibration_images,
    deploy_onnx,
    parity,
)
from automl.deploy.onnx import export_fp32, ort_logits, session
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


def nothing_passes(monkeypatch) -> None:
    """Every form the check meets loses every test image."""
    monkeypatch.setattr(
        check_module,
        "parity",
        lambda t, o, y: Parity(images=len(y), disagree=len(y), lost=len(y), won=0),
    )


def test_a_failed_check_leaves_nothing_behind(trained_student, tmp_path, monkeypatch):
    model, arch, data = trained_student
    nothing_passes(monkeypatch)
    with pytest.raises(ExportCheckFailed, match="not exported") as info:
        deploy_onnx(model, deploy_form(arch), data, tmp_path / "model.onnx")
    # int8, int8 with 7-bit weights and the fp32 fallback were each tried before failing
    assert "int8: " in str(info.value) and "with reduce_range: " in str(info.value)
    assert "fp32: -100.00 points against PyTorch" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_calibration_uses_seeded_training_images_only(tiny):
    data = tiny.data
    a, b = calibration_images(data, 3, n=16), calibration_images(data, 3, n=16)
    assert np.array_equal(a, b) and not np.array_equal(a, calibration_images(data, 4, n=16))
    train = {tuple(x.flatten().tolist()) for x in data.train.x.numpy()}
    assert all(tuple(x.flatten().tolist()) in train for x in a)


def test_parity_judges_the_model_not_the_noise_of_a_small_test_set():
    # 384 images: two images lost is half a point, within what the test set can tell
    assert Parity(images=384, disagree=3, lost=2, won=0).passes
    # a more accurate form always passes, however much it disagrees
    assert Parity(images=384, disagree=40, lost=5, won=20).passes
    # a real loss passes at no size of test set: 4 points on 384, 10 points on 50 images
    assert not Parity(images=384, disagree=31, lost=22, won=6).passes
    assert not Parity(images=50, disagree=5, lost=5, won=0).passes
    # the same 1-point loss is noise on 200 images and a measured loss on 20,000
    assert Parity(images=200, disagree=2, lost=2, won=0).passes
    assert not Parity(images=20_000, disagree=200, lost=200, won=0).passes
    lost = Parity(images=100, disagree=4, lost=3, won=1)
    assert lost.drop == pytest.approx(0.02) and lost.drop_low < lost.drop


def test_parity_counts_paired_predictions():
    labels = np.array([0, 1, 2, 3, 4])
    torch_pred = np.array([0, 1, 2, 0, 0])  # right on 0, 1, 2
    onnx_pred = np.array([0, 1, 9, 3, 0])  # right on 0, 1, 3
    assert parity(torch_pred, onnx_pred, labels) == Parity(images=5, disagree=2, lost=1, won=1)


def _small_test_set(data, n: int):
    return dataclasses.replace(data, test=Split(data.test.x[:n], data.test.y[:n]))


def test_a_small_test_set_keeps_a_good_int8_model(trained_student, tmp_path):
    model, arch, data = trained_student
    dep = deploy_onnx(model, deploy_form(arch), _small_test_set(data, 40), tmp_path / "m.onnx")
    assert dep.format == "int8" and dep.fallback is None and dep.disagree <= 2


def test_a_broken_int8_form_falls_back_to_fp32_and_says_why(trained_student, tmp_path, monkeypatch):
    """A quantizer that ruins the model (here: writes an untrained network) must not cost the
    model its deployment: it ships as fp32 ONNX, which scores like PyTorch."""
    model, arch, data = trained_student
    untrained = copy.deepcopy(model)
    for p in untrained.parameters():
        torch.nn.init.normal_(p)

    def ruinous(fp32, calibration, path, reduce_range=False, model=None):
        export_fp32(untrained, data.example_input(1), path)
        return 0

    monkeypatch.setattr(check_module, "quantize_int8", ruinous)
    dep = deploy_onnx(model, deploy_form(arch), data, tmp_path / "m.onnx")
    assert dep.format == "fp32" and dep.onnx_bytes == dep.fp32_onnx_bytes
    assert dep.fallback.startswith("int8 failed its check (int8: ")
    assert "int8 with reduce_range: " in dep.fallback and "so it ships as fp32" in dep.fallback
    assert dep.onnx_test_accuracy == pytest.approx(dep.torch_test_accuracy, abs=0.005)
