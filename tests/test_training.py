from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automl.data import Split
from automl.training import FitSettings, NonFiniteLoss, distillation_loss, fit, kd_loss


def test_kd_loss_mixes_ce_and_scaled_kl():
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    out = kd_loss(s, t, y, temperature=4.0, alpha=0.0)
    assert torch.allclose(out["loss"], F.cross_entropy(s, y))
    same = kd_loss(t, t, y, temperature=4.0, alpha=1.0)
    assert same["kd_loss"].abs() < 1e-6
    kl = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean")
    assert torch.allclose(kd_loss(s, t, y, 2.0, 1.0)["loss"], 4 * kl, atol=1e-6)
    assert set(out) == {"loss", "task_loss", "kd_loss", "output"}


def test_nan_teacher_logits_raise_non_finite_loss():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    train = Split(torch.randn(20, 1, 4, 4), torch.randint(0, 3, (20,)))
    loss = distillation_loss(torch.full((20, 3), float("nan")), 2.0, 0.5)
    with pytest.raises(NonFiniteLoss, match="epoch 1"):
        fit(model, train, loss, FitSettings(2, 1e-3, 0.0, 8), torch.device("cpu"), seed=0)


def test_fit_learns_a_separable_problem_and_stops_on_request():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 2, 2)
    y = (x.flatten(1).sum(1) > 0).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    loss = lambda logits, batch: {"loss": F.cross_entropy(logits, batch.y)}  # noqa: E731
    epochs = fit(model, Split(x, y), loss, FitSettings(30, 0.05, 0.0, 16), torch.device("cpu"), 0)
    assert epochs == 30
    assert (model(x).argmax(1) == y).float().mean() > 0.95
    stopped = fit(
        model,
        Split(x, y),
        loss,
        FitSettings(30, 0.05, 0.0, 16),
        torch.device("cpu"),
        0,
        on_epoch=lambda e: e == 2,
    )
    assert stopped == 2


def test_fit_trains_on_the_subset_it_is_given_only():
    x, y = torch.randn(40, 1, 2, 2), torch.arange(40) % 2
    seen: list[int] = []

    def loss(logits, batch):
        seen.extend(batch.idx.tolist())
        return {"loss": F.cross_entropy(logits, batch.y)}

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    subset = torch.tensor([3, 5, 8, 13, 21, 34])
    fit(
        model,
        Split(x, y),
        loss,
        FitSettings(3, 1e-2, 0.0, 4),
        torch.device("cpu"),
        0,
        indices=subset,
    )
    assert sorted(seen) == sorted(subset.tolist() * 3)


def test_a_last_batch_of_one_image_waits_for_the_next_epoch():
    """9 images in batches of 4 leave one over, which batch norm cannot train on: each epoch
    leaves out one image (another one each time) instead of failing."""
    x, y = torch.randn(9, 1, 2, 2), torch.arange(9) % 2
    sizes: list[int] = []
    seen: list[int] = []

    def loss(logits, batch):
        sizes.append(len(batch.y))
        seen.extend(batch.idx.tolist())
        return {"loss": F.cross_entropy(logits, batch.y)}

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    fit(model, Split(x, y), loss, FitSettings(3, 1e-2, 0.0, 4), torch.device("cpu"), 0)
    assert sizes == [4, 4] * 3
    assert len(set(seen)) == 9  # every image still trains in some epoch


@pytest.mark.parametrize("amp", [True, False])
def test_fit_trains_channels_last_under_bf16_where_native_and_returns_the_default_order(
    amp, monkeypatch
):
    monkeypatch.setattr("automl.training.bf16_autocast", lambda device: True)  # any CPU can
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 2 * 2, 2))
    seen = []
    model[0].register_forward_hook(
        lambda m, args, out: seen.append(
            (args[0].is_contiguous(memory_format=torch.channels_last), out.dtype)
        )
    )
    train = Split(torch.randn(12, 2, 4, 4), torch.randint(0, 2, (12,)))
    loss = lambda logits, batch: {"loss": F.cross_entropy(logits, batch.y)}  # noqa: E731
    fit(model, train, loss, FitSettings(1, 1e-3, 0.0, 4, amp), torch.device("cpu"), 0)
    assert seen == [(True, torch.bfloat16 if amp else torch.float32)] * 3
    assert model[0].weight.is_contiguous() and model[0].weight.dtype == torch.float32
