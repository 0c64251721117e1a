"""Student files: safetensors with the architecture in its metadata, a JSON card beside it,
loaded back into a timm model; also files written before techniques were plugins. (Every
technique's round trip through these files is in tests/compress/test_contract.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from automl.stages import find_stages
from automl.student.build import build_student, fold
from automl.student.files import load_student, save_student
from teachers.load import create_teacher
from tests.conftest import make_arch

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy_run_v1"


@pytest.mark.parametrize("small_input", [False, True])
def test_file_holds_weights_architecture_and_card(tmp_path, small_input):
    teacher = create_teacher("resnet18", 1, 10, small_input=small_input).eval()
    x = torch.randn(4, 1, 16, 16)
    stages = find_stages(teacher, x[:1])
    arch = make_arch([0.5] * 4, [1, 2, 1, 2], [6] * 4)
    student = build_student(teacher, stages, arch, (x, torch.zeros(4, dtype=torch.long))).model
    fold(student)
    path = tmp_path / "s.safetensors"
    save_student(path, student.eval(), arch, {"trial": 3})
    with safe_open(str(path), framework="pt") as fh:
        assert json.loads(fh.metadata()["architecture"])["techniques"] == list(arch.techniques)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["trial"] == 3 and card["architecture"]["stages"][1]["blocks"] == 2
    loaded, loaded_arch = load_student(path, "resnet18", 1, 10, (16, 16), small_input)
    assert loaded_arch == arch and len(loaded.layer1) == 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), student(x), atol=1e-5)


def test_a_student_saved_before_techniques_were_plugins_loads():
    path = LEGACY / "models" / "trial_0001.safetensors"
    model, arch = load_student(path, "mobilenetv3_small_050", 1, 10, (16, 16))
    assert arch.techniques == ("depth", "channels", "weight_quant")
    card = json.loads(path.with_suffix(".json").read_text())
    assert [s["blocks"] for s in card["architecture"]["stages"]] == [
        s["blocks"] for s in arch.stages
    ]
    out = model(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
