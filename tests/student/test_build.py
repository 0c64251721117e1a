"""Building a student: techniques applied in order, the teacher untouched, what it costs to
store, and the form it deploys in."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from automl.compress import DeployForm, onnx_format
from automl.measure import macs_and_params
from automl.stages import find_stages
from automl.student.build import (
    build_student,
    deploy_form,
    fold,
    packed_size_bytes,
    tensor_costs,
)
from tests.conftest import make_arch

X = torch.randn(16, 1, 32, 32)
Y = torch.randint(0, 10, (16,))


@pytest.fixture(scope="module")
def teacher():
    return timm.create_model("resnet18", in_chans=1, num_classes=10).eval()


def test_depth_channels_and_bits_all_apply_and_leave_the_teacher_alone(teacher):
    stages = find_stages(teacher, X[:1])
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    arch = make_arch([0.5, 0.5, 0.25, 0.25], [2, 1, 2, 1], [8, 8, 4, 4])
    student = build_student(teacher, stages, arch, (X, Y)).model
    assert student.layer1[0].conv1.out_channels == 32
    assert student.layer3[0].conv1.out_channels == 64
    assert len(student.layer2) == 1 and len(student.layer4) == 1
    assert student.fc.out_features == 10
    assert hasattr(student.layer1[0].conv1, "parametrizations")  # fake-quant
    t_macs, t_params = macs_and_params(teacher, X[:1])
    s_macs, s_params = macs_and_params(student, X[:1])
    assert s_params < 0.2 * t_params and s_macs < 0.5 * t_macs
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in state.items())


def test_kept_channels_inherit_teacher_weights(teacher):
    stages = find_stages(teacher, X[:1])
    arch = make_arch([1.0] * 4, [2] * 4, [32] * 4, stem_head_bits=32)
    student = build_student(teacher, stages, arch, (X, Y)).model
    with torch.no_grad():
        assert torch.allclose(student.eval()(X[:4]), teacher(X[:4]), atol=1e-4)


def test_an_architecture_that_does_not_fit_the_teacher_is_refused(teacher):
    stages = find_stages(teacher, X[:1])
    with pytest.raises(ValueError, match=r"blocks: stage 1 \(layer2\) allows 1 to 2, got 3"):
        build_student(teacher, stages, make_arch([1] * 4, [2, 3, 2, 2], [8] * 4), (X, Y))
    with pytest.raises(ValueError, match="3 stages, the teacher 4"):
        build_student(teacher, stages, make_arch([1] * 3, [2] * 3, [8] * 3), (X, Y))


def test_packed_size_counts_bits_per_stage_scales_and_fp32_rest(teacher):
    stages = find_stages(teacher, X[:1])
    fp32 = build_student(
        teacher, stages, make_arch([1] * 4, [2] * 4, [32] * 4, stem_head_bits=32), (X, Y)
    )
    arch = make_arch([1] * 4, [2] * 4, [4, 6, 8, 32], stem_head_bits=8)
    quant = build_student(teacher, stages, arch, (X, Y))
    by_module = {n: m for n, m in teacher.named_modules()}
    expected_bits = 0
    for key, cost in tensor_costs(fp32.model).items():
        module, _, tensor = key.rpartition(".")
        bits = {"layer1": 4, "layer2": 6, "layer3": 8, "layer4": 32}.get(module.split(".")[0], 8)
        quantized = tensor == "weight" and isinstance(by_module[module], nn.Conv2d | nn.Linear)
        if quantized and bits < 32:
            expected_bits += cost.values * bits + by_module[module].weight.shape[0] * 32
        else:
            expected_bits += cost.values * 32
    assert packed_size_bytes(quant, arch) == -(-expected_bits // 8)
    # Folding keeps the numbers: a folded student costs what the parametrized one did.
    before = packed_size_bytes(quant, arch)
    fold(quant.model)
    assert not hasattr(quant.model.layer1[0].conv1, "parametrizations")
    assert packed_size_bytes(quant, arch) == before


def test_folding_keeps_the_quantized_outputs(teacher):
    stages = find_stages(teacher, X[:1])
    arch = make_arch([0.5] * 4, [2] * 4, [4] * 4)
    student = build_student(teacher, stages, arch, (X, Y)).model.eval()
    with torch.no_grad():
        before = student(X[:3])
        fold(student)
        assert torch.allclose(student(X[:3]), before, atol=1e-5)


def test_deploy_form_combines_the_techniques():
    assert onnx_format(deploy_form(make_arch([1] * 2, [1] * 2, [8, 4]))) == "int8"
    assert onnx_format(deploy_form(make_arch([1] * 2, [1] * 2, [8, 32]))) == "fp32"
    assert (
        onnx_format(deploy_form(make_arch([1] * 2, [1] * 2, [8, 8], stem_head_bits=32))) == "fp32"
    )
    assert deploy_form(None) == DeployForm(weight_bits=32)  # the teacher
    narrow = deploy_form(make_arch([1] * 2, [1] * 2, [8, 4]))
    assert narrow.weight_bits == 8 and any("sub-byte" in n for n in narrow.notes)
    assert deploy_form(make_arch([1] * 2, [1] * 2, [8, 8])).notes == ()
