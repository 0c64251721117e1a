"""Augmentation and consistent distillation: a student always sees the teacher's logits of
exactly the view it trains on, whether they were cached for K views or computed per batch."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from automl.augment import AugmentConfig, Views, apply_views, make_views
from automl.training import (
    BankViews,
    FitSettings,
    RandomViews,
    distillation_loss,
    fit,
    online_distillation,
)
from teachers.cache import view_bank

AUGMENT = AugmentConfig(crop_padding=2, flip=True)


def test_views_crop_pad_with_black_and_mirror():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(3, 1, 1, 1)
    fill = torch.tensor([-1.0])
    views = Views(
        torch.tensor([2, 0, 2]), torch.tensor([2, 0, 4]), torch.tensor([False, False, True])
    )
    out = apply_views(x, views, padding=2, fill=fill)
    assert torch.equal(out[0], x[0])  # offset (padding, padding), no flip: the image itself
    assert torch.equal(out[1, 0, 2:, 2:], x[1, 0, :2, :2]) and (out[1, 0, :2] == -1).all()
    # shifted left by 2 (black enters on the right), then mirrored
    assert torch.equal(out[2, 0, :, 2:], x[2, 0, :, 2:].flip(-1)) and (out[2, 0, :, :2] == -1).all()
    off = make_views(5, 4, AugmentConfig(), seed=0)
    assert len(off) == 1 and torch.equal(apply_views(x, off[0][torch.arange(3)], 0, fill), x)
    again = make_views(50, 3, AUGMENT, seed=3)
    assert all(
        torch.equal(a.dy, b.dy) for a, b in zip(again, make_views(50, 3, AUGMENT, 3), strict=True)
    )
    assert not torch.equal(again[0].dx, again[1].dx) and again[0].flip.any()


def _linear_teacher(data) -> nn.Module:
    """No batch norm, so training mode and eval mode compute the same function."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(data.in_chans, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))


def _kd_losses(student, data, loss_fn, augment) -> list[float]:
    seen: list[float] = []

    def recording(logits, batch):
        out = loss_fn(logits, batch)
        seen.append(float(out["kd_loss"].detach()))
        return out

    fit(
        student,
        data.train,
        recording,
        FitSettings(2, 1e-12, 0.0, 64),
        torch.device("cpu"),
        0,
        augment=augment,
    )
    return seen


def _banked_teacher(tiny, tmp_path, augment: AugmentConfig):
    """The tiny data with `augment`, a linear teacher, and its bank of 3 cached views."""
    data = dataclasses.replace(tiny.data, augment=augment)
    net = _linear_teacher(data)
    net(data.example_input())
    teacher = dataclasses.replace(tiny.teacher, model=net.eval(), cache_dir=tmp_path)
    return data, net, teacher, view_bank(teacher, data, 3, torch.device("cpu"))


def test_cached_views_and_online_teacher_both_match_the_students_view(tiny, tmp_path):
    data, net, teacher, bank = _banked_teacher(tiny, tmp_path, AUGMENT)
    assert bank.logits.shape == (3, len(data.train), 10)
    k, i = 2, torch.arange(5)
    by_hand = net(apply_views(data.train.x[i], bank.views[k][i], 2, data.black))
    assert torch.allclose(bank.logits[k, :5], by_hand, atol=1e-5)
    stamp = (tmp_path / "views3.safetensors").stat().st_mtime_ns
    assert torch.equal(view_bank(teacher, data, 3, torch.device("cpu")).logits, bank.logits)
    assert (tmp_path / "views3.safetensors").stat().st_mtime_ns == stamp  # read, not recomputed

    # A student identical to the teacher has zero KD loss only if its targets are its views'.
    cached = distillation_loss(bank.logits, 1.0, 1.0)
    banked = _kd_losses(copy.deepcopy(net), data, cached, BankViews(bank, 2, data.black))
    assert max(banked) < 1e-6
    online = online_distillation(net, 1.0, 1.0)
    fresh = RandomViews(AUGMENT, data.black)
    assert max(_kd_losses(copy.deepcopy(net), data, online, fresh)) < 1e-6
    mismatched = _kd_losses(copy.deepcopy(net), data, cached, fresh)  # targets of other views
    assert min(mismatched) > 1e-3


def test_unaugmented_data_use_the_plain_train_logits(tiny):
    bank = view_bank(tiny.teacher, tiny.data, 4, torch.device("cpu"))
    assert bank.count == 1 and torch.equal(bank.logits[0], tiny.teacher.train_logits)


ERASING = AugmentConfig(crop_padding=2, flip=True, erase=0.5)


def test_erasing_replaces_one_rectangle_with_reproducible_unit_noise():
    torch.manual_seed(0)
    x = torch.full((400, 2, 28, 28), 7.0)
    (views,) = make_views(400, 1, ERASING, seed=1)
    assert views.erase is not None
    out = apply_views(x, views, 0, torch.zeros(2))
    changed = out != 7.0  # (N, C, H, W)
    erased = changed.flatten(1).any(1)
    assert torch.equal(erased, views.erase[:, 0] > 0)
    assert 0.4 < erased.float().mean() < 0.6  # erase=0.5
    for i in torch.nonzero(erased).flatten()[:50].tolist():
        rows = changed[i, 0].any(1).nonzero().flatten()
        cols = changed[i, 0].any(0).nonzero().flatten()
        box = changed[i, 0, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all() and changed[i, 0].sum() == box.numel()  # one filled rectangle
        assert torch.equal(changed[i, 0], changed[i, 1])  # across channels
        fraction = box.numel() / 28**2
        assert 0.01 < fraction <= 0.45  # [0.02, 0.4] of the image, up to rounding and clamping
    values = out[changed]
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
    assert not torch.equal(out[erased][0, 0], out[erased][0, 1])  # noise differs per channel
    again = apply_views(x, make_views(400, 1, ERASING, seed=1)[0], 0, torch.zeros(2))
    assert torch.equal(out, again)  # a view is a fixed image: its teacher logits can be cached
    half = views[torch.arange(0, 400, 2)]
    assert torch.equal(apply_views(x[::2], half, 0, torch.zeros(2)), out[::2])


def test_erasing_off_draws_the_views_of_before():
    on, off = make_views(64, 2, ERASING, 5), make_views(64, 2, AUGMENT, 5)
    assert off[0].erase is None and off[0].noise is None
    assert torch.equal(on[0].dy, off[0].dy) and torch.equal(on[0].flip, off[0].flip)
    assert AugmentConfig(erase=0.25).enabled and not AugmentConfig().enabled


def test_cached_views_with_erasing_match_the_students_view(tiny, tmp_path):
    data, net, _, bank = _banked_teacher(tiny, tmp_path, ERASING)
    assert all(v.erase is not None and (v.erase[:, 0] > 0).any() for v in bank.views)
    cached = distillation_loss(bank.logits, 1.0, 1.0)
    assert max(_kd_losses(copy.deepcopy(net), data, cached, BankViews(bank, 2, data.black))) < 1e-6
    mismatched = _kd_losses(copy.deepcopy(net), data, cached, RandomViews(ERASING, data.black))
    assert min(mismatched) > 1e-3
