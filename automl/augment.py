"""Augmentation of normalised image batches, and fixed views whose teacher logits can be cached.

Two operations, as in the CIFAR and Fashion-MNIST literature: a random crop of the
original size from the image padded by `crop_padding` black pixels, and a horizontal
flip with probability 1/2. A `Views` value holds one concrete choice per image
(crop offsets and flip), so the same view can be produced again: the teacher's
logits for it can be computed once and reused by every student (`ViewBank`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field


class AugmentConfig(BaseModel):
    """How training images are augmented, for the teacher and every student."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crop_padding: Annotated[
        int, Field(ge=0, le=16, description="random crop after padding by this many pixels")
    ] = 0
    flip: bool = Field(default=False, description="random horizontal flip")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip


@dataclass(frozen=True)
class Views:
    """One view per image: crop offsets in [0, 2 * padding] and whether it is mirrored."""

    dy: torch.Tensor  # (N,) int64
    dx: torch.Tensor  # (N,) int64
    flip: torch.Tensor  # (N,) bool

    def __getitem__(self, idx: torch.Tensor) -> Views:
        return Views(self.dy[idx], self.dx[idx], self.flip[idx])


def draw_views(n: int, config: AugmentConfig, generator: torch.Generator) -> Views:
    """`n` random views (CPU tensors) drawn from `generator`."""
    span = 2 * config.crop_padding + 1
    dy = torch.randint(0, span, (n,), generator=generator)
    dx = torch.randint(0, span, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5 if config.flip else torch.zeros(n, dtype=bool)
    return Views(dy, dx, flip)


def apply_views(x: torch.Tensor, views: Views, padding: int, fill: torch.Tensor) -> torch.Tensor:
    """The views of a batch (N, C, H, W): pad by `padding` with `fill` (C,), crop, mirror."""
    n, c, h, w = x.shape
    device = x.device
    dy, dx, flip = views.dy.to(device), views.dx.to(device), views.flip.to(device)
    if padding > 0:
        padded = (
            fill.to(device, x.dtype)[None, :, None, None]
            .expand(n, c, h + 2 * padding, w + 2 * padding)
            .clone()
        )
        padded[:, :, padding : padding + h, padding : padding + w] = x
        rows = (dy[:, None] + torch.arange(h, device=device)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=device)[None, :])[:, None, None, :]
        batch = torch.arange(n, device=device)[:, None, None, None]
        chans = torch.arange(c, device=device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class ViewBank:
    """K fixed views of every training image and the teacher's logits for each.

    A student draws one of the K views per image per epoch, so distillation always
    sees the teacher's logits of exactly the view the student trains on.
    """

    views: list[Views]  # K entries, each over all N training images
    logits: torch.Tensor  # (K, N, num_classes) float32

    @property
    def count(self) -> int:
        return len(self.views)


def make_views(n: int, count: int, config: AugmentConfig, seed: int) -> list[Views]:
    """`count` views of `n` images, reproducible from `seed`; one identity view when
    augmentation is off."""
    if not config.enabled:
        zero = torch.zeros(n, dtype=torch.int64)
        return [Views(zero, zero, torch.zeros(n, dtype=bool))]
    generator = torch.Generator().manual_seed(seed)
    return [draw_views(n, config, generator) for _ in range(count)]
