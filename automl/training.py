"""Training loops shared by the teacher (cross-entropy) and the students (distillation).

Distillation follows Hinton et al. 2015 ("Distilling the Knowledge in a Neural
Network"): KL(student_T || teacher_T) at temperature T, scaled by T² so its
gradients keep their size as T changes, mixed with cross-entropy:
``loss = alpha * T² * KL + (1 - alpha) * CE``.

timm ships `timm.task.LogitDistillationTask` with this loss, but it runs the
teacher forward on every batch. Here the teacher's logits are computed once per
data set and shared by every trial (a search trains hundreds of students on the
same images), so the loss takes cached logits instead; it returns the same keys.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.data import Split

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
# (epoch, val_accuracy) -> True to stop training early
EpochCallback = Callable[[int, float], bool]


class NonFiniteLoss(RuntimeError):
    """Training met a NaN or infinite loss; the trial fails with this reason."""


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    augment_shift: int = 0  # random translation in pixels, 0 = none


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """Hinton KD mixed with cross-entropy; returns {'loss', 'task_loss', 'kd_loss', 'output'}."""
    task = F.cross_entropy(student_logits, labels)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kd = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2
    return {
        "loss": alpha * kd + (1.0 - alpha) * task,
        "task_loss": task,
        "kd_loss": kd,
        "output": student_logits,
    }


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, _idx: torch.Tensor):
    return {"loss": F.cross_entropy(logits, labels), "output": logits}


def distillation_loss(teacher_logits: torch.Tensor, temperature: float, alpha: float) -> LossFn:
    """A LossFn reading the cached teacher logits of each batch by sample index."""

    def loss(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor):
        return kd_loss(logits, teacher_logits[idx], labels, temperature, alpha)

    return loss


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels, filling with the edge values."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


def fit(
    model: nn.Module,
    train: Split,
    loss_fn: LossFn,
    settings: FitSettings,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[int], bool] | None = None,
) -> int:
    """Train `model` with AdamW and a cosine schedule; returns the epochs run.

    `on_epoch(epoch)` is called after each epoch and may return True to stop.
    Raises NonFiniteLoss when a loss is NaN or infinite.
    """
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings.lr,
        total_steps=settings.epochs * steps_per_epoch,
        pct_start=0.15,
        anneal_strategy="cos",
    )
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            x = random_shift(train.x[idx], settings.augment_shift, generator).to(device)
            out = loss_fn(model(x), train.y[idx].to(device), idx.to(device))
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss is {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if on_epoch is not None and on_epoch(epoch):
            break
    model.eval()
    return epoch


@torch.inference_mode()
def predict_logits(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    """Logits for `x` in eval mode, on the CPU, (N, num_classes)."""
    model.to(device).eval()
    return torch.cat(
        [
            model(x[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
    )


def accuracy(model: nn.Module, split: Split, device: torch.device) -> float:
    logits = predict_logits(model, split.x, device)
    return float((logits.argmax(dim=1) == split.y).float().mean())
