"""Feature distillation (FitNets): the stage-output loss as the module docstring states it, the
cached and the online teacher giving the same targets, regressors trained and dropped, and the
dimension in the search space."""

from __future__ import annotations

import dataclasses
import pickle

import optuna
import pytest
import torch
import torch.nn.functional as F

from automl import trial as trial_module
from automl.augment import AugmentConfig
from automl.config import validate_config
from automl.errors import UserError
from automl.feature_kd import feature_bank
from automl.training import Batch
from automl.trial import run_trial
from search_spaces import Architecture, BoundSearchSpace, SearchSpaceConfig
from tests.conftest import make_arch, tiny_raw

ARCH = dict(keep=[0.5, 0.5, 0.25, 0.25], blocks=[1, 1, 1, 1], bits=[8, 8, 8, 8])


def _stage_outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """A resnet's four stage outputs, computed by calling its modules in order (no hooks)."""
    x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    outs = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        outs.append(x)
    return outs


def _batch(tiny, n: int = 16) -> Batch:
    idx = torch.arange(3, 3 + n)
    return Batch(tiny.data.train.x[idx], tiny.data.train.y[idx], idx)


def test_the_loss_adds_the_weighted_mean_stage_mse_to_the_logit_loss(tiny):
    ctx = tiny.trial_context()
    arch = make_arch(**ARCH, kd_feature_weight=2.5)
    student = ctx.build(arch)
    loss = ctx.student_loss(student, arch)
    assert loss.extra is not None and len(loss.extra) == 4
    batch = _batch(tiny)
    model = student.model.train()
    out = loss.loss(model(batch.x), batch)
    base = ctx.distillation(arch.kd_temperature, arch.kd_alpha)(model(batch.x), batch)
    with torch.no_grad():
        teacher = _stage_outputs(ctx.teacher.eval(), batch.x)
    mine = _stage_outputs(model, batch.x)
    expected = torch.stack(
        [F.mse_loss(r(s), t) for r, s, t in zip(loss.extra, mine, teacher, strict=True)]
    ).mean()
    assert out["feature_loss"].item() == pytest.approx(expected.item(), rel=2e-3)  # fp16 cache
    assert out["loss"].item() == pytest.approx(
        base["loss"].item() + 2.5 * expected.item(), rel=2e-3
    )
    out["loss"].backward()
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0 for r in loss.extra)
    loss.close()
    assert not any(m._forward_hooks for m in model.modules())


def test_cached_and_online_teachers_give_the_same_targets(tiny):
    cached_ctx = tiny.trial_context()
    online_ctx = dataclasses.replace(cached_ctx, bank=None)  # logits online too
    arch = make_arch(**ARCH, kd_feature_weight=1.0)
    batch = _batch(tiny)
    figures = []
    for ctx in (cached_ctx, online_ctx):
        torch.manual_seed(0)  # the same regressors
        student = ctx.build(arch)
        loss = ctx.student_loss(student, arch)
        out = loss.loss(student.model.train()(batch.x), batch)
        figures.append((out["feature_loss"].item(), out["kd_loss"].item()))
        loss.close()
    (cached_feature, cached_kd), (online_feature, online_kd) = figures
    assert cached_feature == pytest.approx(online_feature, rel=2e-3)
    assert cached_kd == pytest.approx(online_kd, rel=1e-3)


def test_augmented_students_take_the_teacher_s_outputs_of_the_view_they_see(tiny):
    ctx = dataclasses.replace(
        tiny.trial_context(),
        data=dataclasses.replace(tiny.data, augment=AugmentConfig(crop_padding=2, flip=True)),
        training=tiny.config.training.model_copy(update={"augment": True}),
        bank=None,
    )
    assert ctx.augmenter() is not None
    arch = make_arch(**ARCH, kd_feature_weight=1.0)
    student = ctx.build(arch)
    loss = ctx.student_loss(student, arch)
    batch = _batch(tiny)
    flipped = dataclasses.replace(batch, x=batch.x.flip(-1))
    model = student.model.train()
    loss.loss(model(flipped.x), flipped)
    with torch.no_grad():
        want = _stage_outputs(ctx.teacher.eval(), flipped.x)
    hooks = [h for h in ctx.teacher.layer4._forward_hooks.values()]
    assert hooks  # the online teacher's, until closed
    mine = _stage_outputs(model, flipped.x)
    expected = torch.stack(
        [F.mse_loss(r(s), t) for r, s, t in zip(loss.extra, mine, want, strict=True)]
    ).mean()
    assert loss.loss(model(flipped.x), flipped)["feature_loss"].item() == pytest.approx(
        expected.item(), rel=1e-4
    )
    loss.close()
    assert not ctx.teacher.layer4._forward_hooks


def test_a_trial_with_feature_distillation_trains_its_regressors_and_deploys_the_same_student(
    tiny,
):
    ctx = tiny.trial_context()
    plain, _ = run_trial(make_arch(**ARCH), ctx, seed=0)
    result, model = run_trial(make_arch(**ARCH, kd_feature_weight=1.0), ctx, seed=0)
    _, plain_model = run_trial(make_arch(**ARCH), ctx, seed=0)
    assert model.state_dict().keys() == plain_model.state_dict().keys()  # no regressor kept
    assert (result.params, result.macs) == (plain.params, plain.macs)
    assert result.val_accuracy != plain.val_accuracy or not torch.equal(
        model.fc.weight, plain_model.fc.weight
    )  # the stage loss changed the training
    assert 0.5 < result.val_accuracy <= 1.0
    assert not any(m._forward_hooks for m in ctx.teacher.modules())


def test_contexts_derived_by_replace_share_one_teacher_pass_per_pool(tiny, monkeypatch):
    """Finalize derives a context per retrained model: the teacher's stage outputs on the
    pool are computed once, a new pool or new training images get their own, and a pickled
    context (sent to a Ray worker) carries no bank."""
    made = []

    def counted(teacher, stages, train, pool, device):
        made.append(None if pool is None else len(pool))
        return feature_bank(teacher, stages, train, pool, device)

    monkeypatch.setattr(trial_module, "feature_bank", counted)
    arch = make_arch(**ARCH, kd_feature_weight=1.0)

    def banks_made(ctx) -> list[int | None]:
        before = len(made)
        ctx.student_loss(ctx.build(arch), arch).close()
        return made[before:]

    first = tiny.trial_context()
    assert banks_made(first) == [None]
    longer = tiny.config.training.model_copy(update={"epochs": 5})
    assert banks_made(dataclasses.replace(first, training=longer)) == []
    subset = torch.arange(0, len(tiny.data.train), 2)
    assert banks_made(dataclasses.replace(first, subset=subset)) == [len(subset)]
    assert banks_made(dataclasses.replace(first, subset=subset.clone())) == []
    flipped = dataclasses.replace(tiny.data.train, x=tiny.data.train.x.flip(-1))
    other = dataclasses.replace(first, data=dataclasses.replace(tiny.data, train=flipped))
    assert banks_made(other) == [None]
    assert len(first.feature_banks) == 3
    assert len(pickle.loads(pickle.dumps(first.feature_banks))) == 0


def test_the_weight_is_a_dimension_off_by_default(tiny, teacher_cache):
    default = BoundSearchSpace(SearchSpaceConfig(), tiny.stages)
    assert default.config.kd_feature_weight.value == 0.0
    searched = BoundSearchSpace(
        SearchSpaceConfig(kd_feature_weight={"type": "float", "low": 0.0, "high": 4.0}),
        tiny.stages,
    )
    trial = optuna.create_study().ask()
    arch = searched.sample(trial)
    assert 0.0 <= arch.kd_feature_weight <= 4.0 and "kd_feature_weight" in trial.params
    plain = default.sample(optuna.create_study().ask())
    assert plain.kd_feature_weight == 0.0
    saved = plain.model_dump(mode="json")
    del saved["kd_feature_weight"]  # an architecture saved before the field existed
    assert Architecture.model_validate(saved) == plain
    raw = tiny_raw(teacher_cache)
    raw["search_space"] = {"kd_feature_weight": -1.0}
    with pytest.raises(UserError, match="kd_feature_weight"):
        validate_config(raw, "test")
