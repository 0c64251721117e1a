from __future__ import annotations

import json

import pytest
import timm
import torch

from automl.candidate import build_student
from automl.quantization import fold_fake_quant
from automl.stages import find_stages
from automl.student_io import load_student, save_student
from search_spaces import Architecture, StageArchitecture


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_050"])
def test_saved_student_loads_back_with_identical_outputs(tmp_path, name):
    teacher = timm.create_model(name, in_chans=1, num_classes=10).eval()
    x = torch.randn(4, 1, 32, 32)
    stages = find_stages(teacher, x[:1])
    arch = Architecture(
        stages=[StageArchitecture(channel_keep=0.5, blocks=s.min_blocks, bits=6) for s in stages],
        stem_head_bits=8,
    )
    student = build_student(teacher, stages, arch, (x, torch.zeros(4, dtype=torch.long))).model
    fold_fake_quant(student)
    student.eval()
    path = tmp_path / "s.safetensors"
    save_student(path, student, arch, {"trial": 3})
    loaded, loaded_arch = load_student(path, name, 1, 10, (32, 32))
    assert loaded_arch == arch
    assert json.loads(path.with_suffix(".json").read_text())["trial"] == 3
    with torch.no_grad():
        assert torch.allclose(loaded(x), student(x), atol=1e-5)
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for p in student.parameters()
    )
