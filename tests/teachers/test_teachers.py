from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from automl.errors import UserError
from teachers.cache import cache_path, fingerprint, get_teacher
from teachers.spec import TeacherConfig


def test_a_short_recipe_trains_an_accurate_teacher(tiny):
    """Six epochs on 16x16 digits: the training loop works (the shipped 30-epoch recipe's
    accuracy is checked by benchmarks/search_quality.py, which `make search` users run)."""
    teacher, data = tiny.teacher, tiny.data
    assert teacher.card.test_accuracy >= 0.95 and teacher.card.val_accuracy >= 0.95
    assert teacher.train_logits.shape == (len(data.train), 10)


def test_cached_teacher_is_reused_without_training(tiny):
    config, data, teacher = tiny.config, tiny.data, tiny.teacher
    directory = cache_path(config.teacher)
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    again = get_teacher(config.teacher, data, torch.device("cpu"), config.seed)
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.card == teacher.card
    assert torch.equal(again.train_logits, teacher.train_logits)
    card = json.loads((directory / "card.json").read_text())
    assert {"model", "val_accuracy", "test_accuracy", "fingerprint"} <= set(card)


def test_changed_recipe_or_data_changes_the_fingerprint_and_retrains(tiny, tmp_path):
    config, data = tiny.config, tiny.data
    base = fingerprint(config.teacher, data, config.seed)
    assert fingerprint(config.teacher.model_copy(update={"epochs": 3}), data, 0) != base
    assert fingerprint(config.teacher, data, seed=1) != base
    spec = config.teacher.model_copy(update={"cache_dir": tmp_path, "epochs": 1})
    first = get_teacher(spec, data, torch.device("cpu"), 0)
    changed = spec.model_copy(update={"lr": 1e-3})  # same cache folder, other recipe
    second = get_teacher(changed, data, torch.device("cpu"), 0)
    assert second.card.fingerprint != first.card.fingerprint
    assert (
        json.loads((cache_path(spec) / "card.json").read_text())["fingerprint"]
        == second.card.fingerprint
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_user_checkpoint_is_loaded_not_retrained(tiny, tmp_path, suffix):
    data, teacher = tiny.data, tiny.teacher
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in teacher.model.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    spec = TeacherConfig(model="resnet18", checkpoint=path, epochs=0, cache_dir=tmp_path / "c")
    loaded = get_teacher(spec, data, torch.device("cpu"), 0)
    assert loaded.card.source == f"checkpoint:{path}"
    assert loaded.card.val_accuracy == pytest.approx(teacher.card.val_accuracy)


def test_bad_checkpoints_and_names_are_user_errors(tiny, tmp_path):
    data = tiny.data
    cpu = torch.device("cpu")
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\x00garbage")
    cases = [
        (TeacherConfig(checkpoint=tmp_path / "none.pt", cache_dir=tmp_path), "file not found"),
        (TeacherConfig(checkpoint=corrupt, cache_dir=tmp_path), "cannot read"),
        (TeacherConfig(model="resnet19", cache_dir=tmp_path), "did you mean"),
    ]
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(wrong))
    cases.append((TeacherConfig(checkpoint=wrong, cache_dir=tmp_path), "does not fit"))
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": argparse.Namespace(layers=3)}, pickled)  # pickled code, not tensors
    cases.append((TeacherConfig(checkpoint=pickled, cache_dir=tmp_path), "weights-only"))
    for spec, needle in cases:
        with pytest.raises(UserError, match=needle):
            get_teacher(spec, data, cpu, 0)


def test_hub_weights_offline_give_a_clear_message():
    # The hub reads HF_HUB_OFFLINE at import, so this runs in a fresh interpreter.
    code = (
        "from teachers.load import create_teacher\n"
        "from automl.errors import UserError\n"
        "try:\n    create_teacher('resnet18', 1, 10, pretrained=True)\n"
        "except UserError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert "teacher.checkpoint to a local file" in result.stdout, result.stderr
