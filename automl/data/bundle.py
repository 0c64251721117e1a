"""The data contract every data source meets: normalised tensor splits plus preprocessing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class Split:
    """Inputs (N, C, H, W) float32, normalised; labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DataBundle:
    """Train/val/test splits from one fixed seed, and how a raw input becomes a model input.

    `preprocess` tells a user how to turn a raw image into the model's input:
    resize, interpolation, divide_by, mean, std, channels. `fingerprint` changes
    whenever the data or its preprocessing change; teacher cards depend on it.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: list[str]
    preprocess: dict[str, Any]
    fingerprint: str = field(default="")

    @property
    def in_chans(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.x.shape[2]), int(self.train.x.shape[3])

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.train.x[:batch_size].clone()


def stratified_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices into train/val/test, stratified by label, reproducible from `seed`."""
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=labels[rest], random_state=seed + 1
    )
    return np.sort(train), np.sort(val), np.sort(test)


def build_bundle(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    divide_by: float,
    image_size: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> DataBundle:
    """Turn raw images (N, C, H, W) into a normalised, resized, split DataBundle.

    Mean and std are measured on the training split only, per channel.
    """
    x = torch.from_numpy(images.astype(np.float32) / divide_by)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    y = torch.from_numpy(labels.astype(np.int64))
    tr, va, te = stratified_indices(labels, val_fraction, test_fraction, seed)
    mean = x[tr].mean(dim=(0, 2, 3))
    std = x[tr].std(dim=(0, 2, 3)).clamp_min(1e-6)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    preprocess = {
        "resize": [image_size, image_size],
        "interpolation": "bilinear",
        "divide_by": float(divide_by),
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in std],
        "channels": int(x.shape[1]),
    }
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    digest.update(repr((preprocess, val_fraction, test_fraction, seed)).encode())
    return DataBundle(
        name=name,
        train=Split(x[tr].contiguous(), y[tr]),
        val=Split(x[va].contiguous(), y[va]),
        test=Split(x[te].contiguous(), y[te]),
        num_classes=len(class_names),
        class_names=class_names,
        preprocess=preprocess,
        fingerprint=digest.hexdigest()[:16],
    )
