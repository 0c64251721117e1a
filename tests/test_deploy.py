"""The deployed form: ONNX export, int8 static quantization, the self-check, and latency
measured side by side. Real exports, real ONNX Runtime sessions."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from automl import deploy as deploy_module
from automl.candidate import build_student
from automl.deploy import ExportCheckFailed, deploy_onnx
from automl.measure import interleaved_latency_ms
from automl.onnx_runtime import deploy_format, ort_logits, session
from automl.quantization import fold_fake_quant
from automl.stages import find_stages
from search_spaces import Architecture


def _arch(bits: int, stages: int = 4, keep: float = 1.0) -> Architecture:
    return Architecture.model_validate(
        {
            "stages": [{"channel_keep": keep, "blocks": 2, "bits": bits}] * stages,
            "stem_head_bits": min(bits, 8) if bits <= 8 else 32,
        }
    )


@pytest.fixture(scope="module")
def trained_student(default_teacher):
    """The real default teacher with 8-bit weights folded in: a trained, accurate 8-bit model
    (no retraining needed at 8 bits)."""
    _, data, teacher = default_teacher
    stages = find_stages(teacher.model, data.example_input())
    arch = _arch(8)
    student = build_student(teacher.model, stages, arch, (data.train.x[:64], data.train.y[:64]))
    model = student.model.eval()
    fold_fake_quant(model)
    return model, arch, data


def test_formats_follow_the_bit_widths():
    assert deploy_format(_arch(8)) == "int8"
    assert deploy_format(_arch(4)) == "int8"
    assert deploy_format(_arch(32)) == "fp32"
    mixed = Architecture.model_validate(
        {
            "stages": [
                {"channel_keep": 1, "blocks": 1, "bits": 8},
                {"channel_keep": 1, "blocks": 1, "bits": 32},
            ]
        }
    )
    assert deploy_format(mixed) == "fp32"
    assert deploy_format(None) == "fp32"  # the teacher


def test_int8_export_is_small_and_scores_like_pytorch(trained_student, tmp_path):
    model, arch, data = trained_student
    dep = deploy_onnx(model, arch, data, tmp_path / "model.onnx", keep_fp32=tmp_path / "fp32.onnx")
    assert dep.format == "int8" and dep.path.is_file() and (tmp_path / "fp32.onnx").is_file()
    assert dep.onnx_bytes <= 0.30 * dep.fp32_onnx_bytes
    assert abs(dep.onnx_test_accuracy - dep.torch_test_accuracy) <= 0.005
    assert dep.torch_test_accuracy > 0.9  # a real, working model, not chance (0.1)
    # The file holds integer weights that ONNX Runtime runs: QDQ nodes are in the graph.
    import onnx

    ops = {n.op_type for n in onnx.load(str(dep.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_fp32_export_matches_pytorch_logits(default_teacher, tmp_path):
    _, data, teacher = default_teacher
    dep = deploy_onnx(teacher.model, None, data, tmp_path / "teacher.onnx")
    assert dep.format == "fp32" and dep.onnx_bytes == dep.fp32_onnx_bytes
    x = data.test.x[:16]
    with torch.no_grad():
        expected = teacher.model.eval()(x).numpy()
    got = ort_logits(session(dep.path), x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_a_failed_check_leaves_nothing_behind(trained_student, tmp_path, monkeypatch):
    model, arch, data = trained_student
    monkeypatch.setattr(deploy_module, "MAX_ACCURACY_GAP", -1.0)  # no model can pass
    with pytest.raises(ExportCheckFailed, match="not exported") as info:
        deploy_onnx(model, arch, data, tmp_path / "model.onnx")
    assert "reduce_range" in str(info.value)  # the int8 fallback was tried before failing
    assert list(tmp_path.iterdir()) == []


def test_interleaved_latency_ranks_runners_by_their_cost():
    figures = interleaved_latency_ms(
        {"slow": lambda: time.sleep(0.004), "fast": lambda: time.sleep(0.001)},
        rounds=3,
        calls=3,
        warmup=1,
    )
    assert set(figures) == {"slow", "fast"}
    assert figures["slow"] > figures["fast"] >= 1.0
