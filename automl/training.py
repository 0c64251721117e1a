"""Training loops shared by the teacher (cross-entropy) and the students (distillation).

Distillation follows Hinton et al. 2015 ("Distilling the Knowledge in a Neural
Network"): KL(student_T || teacher_T) at temperature T, scaled by T² so its
gradients keep their size as T changes, mixed with cross-entropy:
``loss = alpha * T² * KL + (1 - alpha) * CE``.

The teacher's targets come one of two ways, and both give the logits of exactly the
view the student trains on: `online_distillation` runs the teacher on every batch
(as `timm.task.LogitDistillationTask` does; right on a GPU), `distillation_loss`
reads logits cached once for K fixed views per image (`ViewBank`) and shared by
every trial of a search (cheap on a CPU, where a teacher forward costs more than a
student's step).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.augment import AugmentConfig, ViewBank, Views, apply_views, draw_views
from automl.data.bundle import Images

# (epoch, val_accuracy) -> True to stop training early
EpochCallback = Callable[[int, float], bool]


@dataclass(frozen=True)
class Batch:
    """One training batch on the device: the (augmented) inputs, labels, the indices of its
    images in the training split, and which `ViewBank` view each image is (None: no bank)."""

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    view: torch.Tensor | None = None


LossFn = Callable[[torch.Tensor, Batch], dict[str, torch.Tensor]]


class Augmenter(Protocol):
    """Turns a batch of training images into the views trained on; returns the views' bank
    indices when they come from a `ViewBank`."""

    def __call__(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class NonFiniteLoss(RuntimeError):
    """Training met a NaN or infinite loss; the trial fails with this reason."""


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    amp: bool = True  # bfloat16 autocast where `bf16_autocast(device)`


def bf16_autocast(device: torch.device) -> bool:
    """Whether training on `device` autocasts to bfloat16: on CUDA only.

    Not on CPUs, even those with AVX512-BF16: there torch 2.15's bfloat16 convolution
    backward wrote NaN into the weights of a stride-2 convolution whose kernel overhangs its
    input (resnet18's layer4 on 16 px digits), while float32 stayed finite (BENCHMARKS.md,
    Training on the CPU).
    """
    return device.type == "cuda"


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
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
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


def cross_entropy_loss(logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
    return {"loss": F.cross_entropy(logits.float(), batch.y), "output": logits}


def distillation_loss(teacher_logits: torch.Tensor, temperature: float, alpha: float) -> LossFn:
    """KD against cached teacher logits: (N, C) for un-augmented training, or (K, N, C) for
    a `ViewBank`, looked up by each image's index and view."""
    bank = teacher_logits if teacher_logits.dim() == 3 else teacher_logits[None]

    def loss(logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        view = batch.view if batch.view is not None else torch.zeros_like(batch.idx)
        return kd_loss(logits, bank[view, batch.idx], batch.y, temperature, alpha)

    return loss


def online_distillation(teacher: nn.Module, temperature: float, alpha: float) -> LossFn:
    """KD against the teacher's forward pass on the very batch the student sees (any
    augmentation, no cache): one teacher forward per batch, the right choice on a GPU."""

    def loss(logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target = teacher(batch.x)
        return kd_loss(logits, target, batch.y, temperature, alpha)

    return loss


class RandomViews:
    """A fresh random view of every image in every batch (teacher training, online KD)."""

    def __init__(self, config: AugmentConfig, fill: torch.Tensor) -> None:
        self.config, self.fill = config, fill

    def __call__(self, x, idx, generator):
        views = draw_views(len(idx), self.config, generator)
        return apply_views(x, views, self.config.crop_padding, self.fill), None


class BankViews:
    """One of a `ViewBank`'s K views per image, drawn anew each epoch."""

    def __init__(self, bank: ViewBank, padding: int, fill: torch.Tensor) -> None:
        self.count, self.padding, self.fill = bank.count, padding, fill
        self.dy = torch.stack([v.dy for v in bank.views])  # (K, N)
        self.dx = torch.stack([v.dx for v in bank.views])
        self.flip = torch.stack([v.flip for v in bank.views])
        erased = all(v.erase is not None and v.noise is not None for v in bank.views)
        self.erase = torch.stack([v.erase for v in bank.views]) if erased else None  # (K, N, 4)
        self.noise = torch.stack([v.noise for v in bank.views]) if erased else None

    def __call__(self, x, idx, generator):
        view = torch.randint(0, self.count, (len(idx),), generator=generator)
        chosen = Views(
            self.dy[view, idx],
            self.dx[view, idx],
            self.flip[view, idx],
            None if self.erase is None else self.erase[view, idx],
            None if self.noise is None else self.noise[view, idx],
        )
        return apply_views(x, chosen, self.padding, self.fill), view


def fit(
    model: nn.Module,
    train: Images,
    loss_fn: LossFn,
    settings: FitSettings,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[int], bool] | None = None,
    augment: Augmenter | None = None,
    indices: torch.Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
    extra: nn.Module | None = None,
) -> int:
    """Train `model` with AdamW and a one-cycle cosine schedule; returns the epochs run.

    Trains on the images `indices` selects (default: all of `train`), each batch passed
    through `augment` when given; a last batch of one image is left out of its epoch. An
    in-memory split moves to `device` once, a streamed one batch by batch. Training runs in
    channels-last memory order (the model is returned in the default order); the forward
    pass runs under bfloat16 autocast when `settings.amp` and `bf16_autocast(device)`.
    `on_epoch(epoch)` is called after each epoch and may return True to stop;
    `on_step(step, total_steps)` after each optimizer step (from 1), for compression that
    moves while the model trains. `extra`: modules the loss trains with the model (their
    parameters join the optimizer; moved to `device` and left there). Raises NonFiniteLoss
    when a loss is NaN or infinite.
    """
    model.to(device, memory_format=torch.channels_last).train()
    if extra is not None:
        extra.to(device, memory_format=torch.channels_last).train()
    generator = torch.Generator().manual_seed(seed)
    pool = torch.arange(len(train)) if indices is None else indices.cpu()
    images, y_all = train.to(device), train.y.to(device)
    trained = [model] if extra is None else [model, extra]
    params = [p for m in trained for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    # a last batch of one image would break batch norm: that image (a different one each
    # epoch, the order being shuffled) waits for the next epoch
    used = len(pool) - (len(pool) % settings.batch_size == 1)
    steps_per_epoch = math.ceil(used / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings.lr,
        total_steps=total_steps,
        pct_start=0.15,
        anneal_strategy="cos",
    )
    autocast = settings.amp and bf16_autocast(device)
    epoch = step = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = pool[torch.randperm(len(pool), generator=generator)][:used]
        for idx, x in images.batches(order, settings.batch_size):
            on_device, x, view = idx.to(device), x.to(device, non_blocking=True), None
            if augment is not None:
                x, view = augment(x, idx, generator)
            x = x.contiguous(memory_format=torch.channels_last)
            batch = Batch(x, y_all[on_device], on_device, None if view is None else view.to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = loss_fn(model(batch.x), batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss is {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if on_step is not None:
                on_step(step, total_steps)
        if on_epoch is not None and on_epoch(epoch):
            break
    model.to(memory_format=torch.contiguous_format).eval()
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


@torch.inference_mode()
def predict_split(
    model: nn.Module, split: Images, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    """Logits for every image of `split`, in order, on the CPU, (N, num_classes)."""
    model.to(device).eval()
    order = torch.arange(len(split))
    return torch.cat(
        [model(x.to(device)).float().cpu() for _, x in split.batches(order, batch_size)]
    )


def accuracy(model: nn.Module, split: Images, device: torch.device) -> float:
    logits = predict_split(model, split, device)
    return float((logits.argmax(dim=1) == split.y).float().mean())
