"""`train`'s inputs: every architecture file a user has, and architectures that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl.deploy.retrain import read_architecture, train_architecture
from automl.errors import UserError
from tests.conftest import make_arch

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy_run_v1"


def test_every_architecture_file_reads(tmp_path):
    arch = make_arch([1, 0.5], [1, 2], [8, 4])
    (tmp_path / "architecture.json").write_text(arch.model_dump_json())  # an export's
    (tmp_path / "trial.json").write_text(json.dumps({"architecture": arch.model_dump(mode="json")}))
    assert read_architecture(tmp_path / "architecture.json") == arch
    assert read_architecture(tmp_path / "trial.json") == arch
    legacy = read_architecture(LEGACY / "models" / "trial_0002.json")  # before plugins
    assert legacy.techniques == ("depth", "channels", "weight_quant") and len(legacy.stages) == 4


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"stages": []}', "is not an architecture"),
        ("[1, 2", "is not valid JSON"),
        (
            '{"stages": [{"channel_keep": 1, "blocks": 1, "bits": 8}], "techniques": ["x"]}',
            "unknown compression technique",
        ),
    ],
)
def test_bad_files_are_user_errors(tmp_path, text, needle):
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(UserError, match=needle):
        read_architecture(tmp_path / "a.json")
    with pytest.raises(UserError, match="architecture: file not found"):
        read_architecture(tmp_path / "none.json")


def test_an_architecture_for_another_teacher_is_refused(tiny):
    with pytest.raises(UserError, match=r"does not fit teacher resnet18: blocks: stage 0 .* got 5"):
        train_architecture(tiny.config, make_arch([1] * 4, [5, 2, 2, 2], [8] * 4), 0, True, None)
    with pytest.raises(UserError, match="2 stages, the teacher 4"):
        train_architecture(tiny.config, make_arch([1] * 2, [1, 1], [8] * 2), 0, True, None)
