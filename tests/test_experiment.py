"""The set-up every command shares."""

from __future__ import annotations

import pytest
import torch

from automl.errors import UserError
from automl.experiment import library_versions, resolve_device


def test_the_trial_context_shares_the_teacher_and_its_cached_logits(tiny):
    ctx = tiny.trial_context()
    assert ctx.teacher is tiny.teacher.model and ctx.teacher_logits is tiny.teacher.train_logits
    assert [s.name for s in ctx.stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert ctx.training == tiny.config.training and ctx.device == torch.device("cpu")


def test_devices_and_versions():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")
    versions = library_versions()
    assert {"automl", "python", "torch", "timm", "optuna", "torch_pruning"} <= set(versions)
