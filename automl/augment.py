"""Augmentation of normalised image batches, and fixed views whose teacher logits can be cached.

Three operations, as in the CIFAR and Fashion-MNIST literature: a random crop of the
original size from the image padded by `crop_padding` black pixels, a horizontal flip
with probability 1/2, and random erasing (Zhong et al., AAAI 2020) with probability
`erase`. A `Views` value holds one concrete choice per image (crop offsets, flip, the
erased rectangle and the seed of its noise), so the same view can be produced again: the
teacher's logits for it can be computed once and reused by every student (`ViewBank`).

Random erasing follows the paper's settings: the rectangle covers a fraction of the image
drawn uniformly from [0.02, 0.4], with an aspect ratio drawn log-uniformly from
[0.3, 1/0.3] (log-uniform, as timm draws it, so tall and wide are equally likely), and it
is clamped to the image where the paper draws again. Its pixels get noise of mean 0 and
variance 1 in normalised units, as timm's `RandomErasing(mode="pixel")`; the noise is a
hash of the view's seed and the pixel's position, so a view is reproducible without a
generator per image.
"""

from __future__ import annotations

import math
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
    erase: Annotated[
        float,
        Field(ge=0, le=1, description="probability of random erasing (Zhong et al.); 0 is off"),
    ] = 0.0

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.erase > 0


ERASE_AREA = (0.02, 0.4)  # fraction of the image (Zhong et al.'s s_l, s_h)
ERASE_RATIO = 0.3  # aspect ratio in [0.3, 1 / 0.3] (their r_1)


@dataclass(frozen=True)
class Views:
    """One view per image: crop offsets in [0, 2 * padding], whether it is mirrored, and
    (when erasing is on) the erased rectangle and the seed of its noise."""

    dy: torch.Tensor  # (N,) int64
    dx: torch.Tensor  # (N,) int64
    flip: torch.Tensor  # (N,) bool
    # (N, 4) float: area fraction (0: not erased), aspect ratio, top and left as fractions
    # of the free room; None when erasing is off
    erase: torch.Tensor | None = None
    noise: torch.Tensor | None = None  # (N,) int64 seeds of the erased pixels' noise

    def __getitem__(self, idx: torch.Tensor) -> Views:
        if self.erase is None or self.noise is None:
            return Views(self.dy[idx], self.dx[idx], self.flip[idx])
        return Views(self.dy[idx], self.dx[idx], self.flip[idx], self.erase[idx], self.noise[idx])


def draw_views(n: int, config: AugmentConfig, generator: torch.Generator) -> Views:
    """`n` random views (CPU tensors) drawn from `generator`. With erasing off, the draws
    (and so the views of a seed) are those of the versions before it."""
    span = 2 * config.crop_padding + 1
    dy = torch.randint(0, span, (n,), generator=generator)
    dx = torch.randint(0, span, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5 if config.flip else torch.zeros(n, dtype=bool)
    if config.erase <= 0:
        return Views(dy, dx, flip)
    low, high = ERASE_AREA
    erased = torch.rand(n, generator=generator) < config.erase
    area = (low + (high - low) * torch.rand(n, generator=generator)) * erased
    log_r = math.log(ERASE_RATIO)
    ratio = torch.exp(log_r + (-2 * log_r) * torch.rand(n, generator=generator))
    where = torch.rand(n, 2, generator=generator)
    noise = torch.randint(0, 2**31 - 1, (n,), generator=generator)
    return Views(dy, dx, flip, torch.cat([area[:, None], ratio[:, None], where], 1), noise)


def _hash_noise(seeds: torch.Tensor, count: int) -> torch.Tensor:
    """(N, count) values of mean 0 and variance 1, a fixed function of each seed (N,) and the
    position: a 32-bit integer hash (multiply and xor-shift rounds), scaled from uniform."""
    mask = 0xFFFFFFFF
    v = (seeds[:, None] * 0x9E3779B1 + torch.arange(count, device=seeds.device) * 0x85EBCA6B) & mask
    for mult in (0x7FEB352D, 0x846CA68B):
        v = ((v ^ (v >> 16)) * mult) & mask
    v = v ^ (v >> 16)
    return (v.to(torch.float32) / 2**32 - 0.5) * math.sqrt(12.0)


def _erase(x: torch.Tensor, erase: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Replace each image's rectangle (see `Views.erase`) by its seeded noise."""
    n, c, h, w = x.shape
    area, ratio, top, left = erase.to(x.device, torch.float32).unbind(1)
    pixels = area * h * w
    eh = torch.sqrt(pixels * ratio).round().clamp(1, h)
    ew = torch.sqrt(pixels / ratio).round().clamp(1, w)
    y0 = torch.floor(top * (h - eh + 1)).clamp(max=h - eh)
    x0 = torch.floor(left * (w - ew + 1)).clamp(max=w - ew)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_r = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])  # (N, H)
    inside_c = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])  # (N, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :] & (area > 0)[:, None, None])[:, None]
    values = _hash_noise(noise.to(x.device), c * h * w).view(n, c, h, w).to(x.dtype)
    return torch.where(mask, values, x)


def apply_views(x: torch.Tensor, views: Views, padding: int, fill: torch.Tensor) -> torch.Tensor:
    """The views of a batch (N, C, H, W): pad by `padding` with `fill` (C,), crop, mirror,
    erase."""
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
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if views.erase is not None and views.noise is not None:
        x = _erase(x, views.erase, views.noise)
    return x


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
