"""The CUDA path: training on the GPU under bfloat16 autocast, data and cached logits there,
online distillation, and latency still measured on the deployment device (the CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from automl.augment import AugmentConfig
from automl.experiment import prepare
from automl.trial import run_trial
from tests.conftest import make_arch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def on_cuda(tiny):
    return prepare(tiny.config.model_copy(update={"device": "cuda"}))


@pytest.mark.parametrize("kd_targets", ["cached", "online"])
def test_a_trial_trains_on_cuda_and_times_on_the_cpu(on_cuda, kd_targets):
    training = on_cuda.config.training.model_copy(
        update={"kd_targets": kd_targets, "augment": True}
    )
    exp = dataclasses.replace(
        on_cuda,
        config=on_cuda.config.model_copy(update={"training": training}),
        data=dataclasses.replace(on_cuda.data, augment=AugmentConfig(crop_padding=2)),
    )
    assert exp.device.type == "cuda" and exp.kd_targets == kd_targets
    arch = make_arch([0.5] * 4, [1, 1, 1, 1], [8] * 4)
    result, model = run_trial(arch, exp.trial_context(), seed=0)
    assert 0.5 < result.val_accuracy <= 1 and result.latency_ms > 0
    assert next(model.parameters()).device.type == "cpu"  # the deployed form


def test_auto_distils_online_on_cuda(on_cuda):
    assert on_cuda.kd_targets == "online" and on_cuda.trial_context().bank is None
    assert torch.cuda.is_available()
