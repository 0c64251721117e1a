"""The set-up every command shares."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from automl.augment import AugmentConfig
from automl.errors import UserError
from automl.experiment import library_versions, resolve_device
from automl.training import BankViews


def test_the_trial_context_shares_the_teacher_and_its_cached_logits(tiny):
    ctx = tiny.trial_context()
    assert ctx.teacher is tiny.teacher.model and tiny.kd_targets == "cached"  # auto on a CPU
    assert ctx.bank.count == 1 and torch.equal(ctx.bank.logits[0], tiny.teacher.train_logits)
    assert ctx.subset is None and ctx.augmenter() is None  # digits: no augmentation
    assert [s.name for s in ctx.stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert ctx.training == tiny.config.training and ctx.device == torch.device("cpu")


def _with_training(tiny, **changes):
    training = tiny.config.training.model_copy(update=changes)
    return dataclasses.replace(tiny, config=tiny.config.model_copy(update={"training": training}))


def test_a_proxy_search_trains_on_a_fixed_stratified_subset(tiny):
    proxy = _with_training(tiny, train_subset=200)
    subset = proxy.trial_context().subset
    assert len(subset) == 200 and torch.equal(subset, proxy.trial_context().subset)
    shares = np.bincount(tiny.data.train.y[subset].numpy(), minlength=10) / 200
    assert np.all(np.abs(shares - 0.1) < 0.015)
    n = len(tiny.data.train)
    for size in (10**6, n, n - 9, 9):
        with pytest.raises(UserError, match=f"train_subset: {size} is no proxy subset of the {n}"):
            _with_training(tiny, train_subset=size).trial_context()
    assert len(_with_training(tiny, train_subset=n - 10).trial_context().subset) == n - 10
    online = _with_training(tiny, kd_targets="online")
    assert online.kd_targets == "online" and online.trial_context().bank is None


def test_devices_and_versions():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")
    versions = library_versions()
    assert {"automl", "python", "torch", "timm", "optuna", "torch_pruning"} <= set(versions)


def test_students_see_augmented_views_only_when_training_augment_asks(tiny, tmp_path):
    flipped = dataclasses.replace(tiny.data, augment=AugmentConfig(flip=True))
    teacher = dataclasses.replace(tiny.teacher, cache_dir=tmp_path)
    exp = dataclasses.replace(_with_training(tiny, kd_views=2), data=flipped, teacher=teacher)
    plain = exp.trial_context()
    assert plain.augmenter() is None and plain.bank.count == 1  # the teacher's logits as is
    augmenting = dataclasses.replace(exp, config=_with_training(exp, augment=True).config)
    ctx = augmenting.trial_context()
    assert isinstance(ctx.augmenter(), BankViews) and ctx.bank.count == 2
