from __future__ import annotations

import pytest
import timm
import torch

from automl.candidate import build_student
from automl.measure import macs_and_params
from automl.pruning import get_criterion, list_criteria
from automl.stages import find_stages
from search_spaces import Architecture, StageArchitecture

X = torch.randn(16, 1, 32, 32)
Y = torch.randint(0, 10, (16,))


def _arch(keep, blocks, bits, criterion="l2", stem_head_bits=8) -> Architecture:
    return Architecture(
        stages=[
            StageArchitecture(channel_keep=k, blocks=b, bits=q)
            for k, b, q in zip(keep, blocks, bits, strict=True)
        ],
        criterion=criterion,
        stem_head_bits=stem_head_bits,
    )


@pytest.fixture(scope="module")
def teacher():
    return timm.create_model("resnet18", in_chans=1, num_classes=10).eval()


@pytest.mark.parametrize("criterion", list_criteria())
def test_channels_are_physically_removed_with_every_criterion(teacher, criterion):
    stages = find_stages(teacher, X[:1])
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    arch = _arch([0.5, 0.5, 0.25, 0.25], [2, 1, 2, 1], [8, 8, 4, 4], criterion)
    student = build_student(teacher, stages, arch, (X, Y)).model
    assert student.layer1[0].conv1.out_channels == 32
    assert student.layer3[0].conv1.out_channels == 64
    assert len(student.layer2) == 1 and len(student.layer4) == 1
    assert student.fc.out_features == 10
    t_macs, t_params = macs_and_params(teacher, X[:1])
    s_macs, s_params = macs_and_params(student, X[:1])
    assert s_params < 0.2 * t_params and s_macs < 0.5 * t_macs
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in state.items())  # untouched


def test_kept_channels_inherit_teacher_weights(teacher):
    stages = find_stages(teacher, X[:1])
    arch = _arch([1.0] * 4, [2] * 4, [32] * 4, stem_head_bits=32)
    student = build_student(teacher, stages, arch, (X, Y)).model
    teacher.eval()
    with torch.no_grad():
        student.eval()
        assert torch.allclose(student(X[:4]), teacher(X[:4]), atol=1e-4)


def test_bits_follow_stages_and_stem_head(teacher):
    stages = find_stages(teacher, X[:1])
    student = build_student(teacher, stages, _arch([1, 1, 1, 1], [2] * 4, [4, 6, 8, 32]), (X, Y))
    b = student.bits_of
    assert (b["layer1.0.conv1"], b["layer2.1.conv2"], b["layer3.0.conv1"], b["layer4.0.conv1"]) == (
        4,
        6,
        8,
        32,
    )
    assert b["conv1"] == 8 and b["fc"] == 8


def test_unknown_criterion_lists_known_ones():
    with pytest.raises(ValueError, match=r"known: \['bn_scale'"):
        get_criterion("hessian")
