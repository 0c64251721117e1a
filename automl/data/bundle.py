"""The data contract every data source meets: normalised tensor splits plus preprocessing.

Every source's config derives from `SourceConfig`: the split has its own seed
(`split_seed`), so a search's `--seed` changes the trials, never the data or the
teacher trained on them. Sources without an official test split derive from
`HeldOutTest` and carve one out; the others keep theirs, and validation is carved
from the training images, stratified by label.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.model_selection import train_test_split

from automl.augment import AugmentConfig
from automl.errors import UserError


class SourceConfig(BaseModel):
    """What every data source's config holds besides its `type` and its files."""

    model_config = ConfigDict(extra="forbid")

    image_size: Annotated[
        int | None, Field(ge=8, le=512, description="side after bilinear resize; null: native")
    ] = None
    val_fraction: Annotated[float, Field(gt=0, lt=1, description="of the training images")] = 0.1
    split_seed: Annotated[
        int,
        Field(ge=0, lt=2**31, description="fixes the split; independent of the search seed"),
    ] = 0
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="for the teacher's and students' training"
    )


class HeldOutTest(SourceConfig):
    """A source without an official test split: one is carved out, stratified by label."""

    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> HeldOutTest:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "`val_fraction + test_fraction < 0.9` must hold, but got "
                f"(val_fraction={self.val_fraction}, test_fraction={self.test_fraction})"
            )
        return self


class Images(Protocol):
    """A split of images and labels, held in memory (`Split`) or read from disk as needed
    (`automl.data.stream.StreamedSplit`). Inputs come out normalised, (N, C, H, W) float32."""

    y: torch.Tensor  # (N,) int64, always in memory

    def __len__(self) -> int: ...

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input."""
        ...

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """The inputs at `idx`, in that order."""
        ...

    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, inputs) for consecutive chunks of `order`."""
        ...

    def to(self, device: torch.device) -> Images:
        """This split as training on `device` reads it best."""
        ...


@dataclass(frozen=True)
class Split:
    """Images held in memory: inputs (N, C, H, W) float32, normalised; labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x[idx.to(self.x.device)]

    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield idx, self.images(idx)

    def to(self, device: torch.device) -> Split:
        """On `device` as a whole: one copy, then every batch is a slice there."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class DataBundle:
    """Train/val/test splits fixed by the config's `split_seed`, and how a raw input becomes a
    model input.

    `preprocess` tells a user how to turn a raw image into the model's input:
    resize, interpolation, divide_by, mean, std, channels. `fingerprint` changes
    whenever the data, the split or the preprocessing change; teachers depend on it.
    `augment` says how the training images are augmented (it is not part of the fingerprint:
    the images are the same; the teacher's fingerprint holds it).
    """

    name: str
    train: Images
    val: Images
    test: Images
    num_classes: int
    class_names: list[str]
    preprocess: dict[str, Any]
    fingerprint: str = field(default="")
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def in_chans(self) -> int:
        return self.train.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train.shape[1], self.train.shape[2]

    @property
    def black(self) -> torch.Tensor:
        """A raw zero pixel after normalisation, per channel (C,): what padding fills in."""
        mean = torch.tensor(self.preprocess["mean"], dtype=torch.float32)
        return -mean / torch.tensor(self.preprocess["std"], dtype=torch.float32)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return head(self.train, batch_size)


def head(split: Images, n: int) -> torch.Tensor:
    """The first `n` inputs of `split` (all of them when it holds fewer), a new tensor."""
    return split.images(torch.arange(min(n, len(split))))


def stratified_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices into train/val/test, stratified by label, reproducible from `seed`; a
    UserError when a split would miss a class (too few images for the fractions)."""
    idx = np.arange(len(labels))
    with _splittable(labels, val_fraction, test_fraction):
        rest, test = train_test_split(
            idx, test_size=test_fraction, stratify=labels, random_state=seed
        )
        val_share = val_fraction / (1.0 - test_fraction)
        train, val = train_test_split(
            rest, test_size=val_share, stratify=labels[rest], random_state=seed + 1
        )
    return np.sort(train), np.sort(val), np.sort(test)


@contextlib.contextmanager
def _splittable(labels: np.ndarray, *fractions: float) -> Iterator[None]:
    """scikit-learn's refusal of a stratified split as one message with what to change."""
    try:
        yield
    except ValueError as exc:
        counts = np.bincount(labels.astype(np.int64))
        shown = " and ".join(f"{f:g}" for f in fractions)
        raise UserError(
            f"data: {len(labels)} images in {np.count_nonzero(counts)} classes (the smallest "
            f"has {counts[counts > 0].min()}) cannot be split by class into fractions {shown} "
            f"({exc}); add images to the small classes or raise data.val_fraction"
        ) from None


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` indices of `labels` with every class in its share, sorted (`size` between the
    number of classes and N minus that number: `automl.experiment.check_train_subset`)."""
    subset, _ = train_test_split(
        np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed
    )
    return np.sort(subset)


def build_bundle(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    divide_by: float,
    config: SourceConfig,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> DataBundle:
    """Turn raw images (N, C, H, W) into a normalised, resized, split DataBundle.

    With `test` (the source's official test images and labels) validation is carved from
    `images`; without it, a `HeldOutTest` config carves both. Mean and std are measured on
    the training split only, per channel.
    """
    if test is None:
        if not isinstance(config, HeldOutTest):
            raise TypeError("a source without a test split needs a HeldOutTest config")
        tr, va, te = stratified_indices(
            labels, config.val_fraction, config.test_fraction, config.split_seed
        )
        split: tuple[Any, ...] = (config.val_fraction, config.test_fraction, config.split_seed)
    else:
        tr, va = _carve_validation(labels, config.val_fraction, config.split_seed)
        te = np.arange(len(labels), len(labels) + len(test[1]))
        images = np.concatenate([images, test[0]])
        labels = np.concatenate([labels, test[1]])
        split = (config.val_fraction, config.split_seed, "official test")
    # Memory: the images once as given and once as float32, plus one training-split copy
    # at a time (each step below works in place where it can, or hashes without a copy).
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images))
    digest.update(np.ascontiguousarray(labels))
    side = config.image_size
    x = torch.from_numpy(images.astype(np.float32, copy=images.dtype == np.float32))
    x.div_(divide_by)
    if side is not None and tuple(x.shape[2:]) != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    y = torch.from_numpy(labels.astype(np.int64))
    mean = x[tr].mean(dim=(0, 2, 3))
    std = x[tr].std(dim=(0, 2, 3)).clamp_min(1e-6)
    x.sub_(mean[None, :, None, None]).div_(std[None, :, None, None])
    preprocess = {
        "resize": [int(x.shape[2]), int(x.shape[3])],
        "interpolation": "bilinear",
        "divide_by": float(divide_by),
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in std],
        "channels": int(x.shape[1]),
    }
    digest.update(repr((preprocess, *split)).encode())  # held-out: as before split_seed
    return DataBundle(
        name=name,
        train=Split(x[tr].contiguous(), y[tr]),
        val=Split(x[va].contiguous(), y[va]),
        test=Split(x[te].contiguous(), y[te]),
        num_classes=len(class_names),
        class_names=class_names,
        preprocess=preprocess,
        fingerprint=digest.hexdigest()[:16],
        augment=config.augment,
    )


def _carve_validation(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    with _splittable(labels, fraction):
        train, val = train_test_split(
            np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
        )
    return np.sort(train), np.sort(val)


def check_labels(labels: np.ndarray, class_names: list[str], source: str) -> None:
    """Every label names a class and every class has at least 3 images (a stratified split)."""
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise UserError(
            f"{source}: labels run from {labels.min()} to {labels.max()}, but there are "
            f"{len(class_names)} classes ({', '.join(class_names[:5])}...)"
        )
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    if counts.min() < 3:
        few = {class_names[k]: int(c) for k, c in enumerate(counts) if c < 3}
        raise UserError(
            f"{source}: every class needs at least 3 images for a stratified split; too few: {few}"
        )
