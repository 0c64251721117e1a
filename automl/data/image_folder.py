"""An image folder on disk: one sub-folder per class, images inside (png, jpg, bmp, ...).

Small folders are decoded once and held in memory; large ones are streamed from disk
through a DataLoader (`automl.data.stream`), so 100,000 images at 224 px need no more
memory than a few batches. `stream: null` (the default) streams when the decoded images
would take more than `stream_above_mb`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from automl.data.bundle import (
    DataBundle,
    HeldOutTest,
    build_bundle,
    check_labels,
    stratified_indices,
)
from automl.data.stream import Decoder, StreamedSplit
from automl.errors import UserError
from automl.paths import GivenPath

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
log = logging.getLogger(__name__)
STATS_SAMPLE = 2000  # training images that mean and std are measured on, when streaming


class ImageFolderConfig(HeldOutTest):
    type: Literal["image_folder"] = "image_folder"
    root: GivenPath
    channels: Literal[1, 3] = 3
    image_size: Annotated[int | None, Field(ge=8, le=512, description="side after resize")] = 32
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    stream: bool | None = Field(
        default=None, description="read batches from disk; null: when larger than below"
    )
    stream_above_mb: Annotated[float, Field(gt=0)] = 1024.0
    workers: Annotated[int, Field(ge=0, le=64, description="DataLoader workers, streaming")] = 2


def scan(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names, image files and their labels; an empty class folder is an error. Hidden
    entries (`.ipynb_checkpoints`, `.DS_Store`) are ignored; other files that are no images
    are skipped and counted in one warning."""
    if not root.is_dir():
        raise UserError(f"data.root: image folder not found: {root}")
    classes = sorted(p.name for p in _visible(root) if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"data.root: {root} needs at least 2 class sub-folders, found {classes}")
    paths: list[Path] = []
    labels: list[int] = []
    skipped: list[Path] = []
    for label, name in enumerate(classes):
        entries = sorted(_visible(root / name))
        is_image = [p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries]
        found = [p for p, ok in zip(entries, is_image, strict=True) if ok]
        skipped += [p for p, ok in zip(entries, is_image, strict=True) if not ok]
        if not found:
            raise UserError(
                f"data.root: class folder {root / name} holds no images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); remove it or add images"
            )
        paths += found
        labels += [label] * len(found)
    if skipped:
        log.warning(
            "data.root: skipped %d entries that are no images (%s), e.g. %s",
            len(skipped),
            ", ".join(sorted(IMAGE_SUFFIXES)),
            skipped[0],
        )
    array = np.asarray(labels, dtype=np.int64)
    check_labels(array, classes, f"data.root: {root}")
    return classes, paths, array


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def load(config: ImageFolderConfig) -> DataBundle:
    classes, paths, labels = scan(config.root)
    side = config.image_size or 32
    decoded_mb = len(paths) * config.channels * side * side * 4 / 2**20
    stream = config.stream if config.stream is not None else decoded_mb > config.stream_above_mb
    if stream:
        return _streamed(config, classes, paths, labels, side)
    decoder = Decoder("L" if config.channels == 1 else "RGB", side, 1.0, (0.0,), (1.0,))
    images = np.empty((len(paths), config.channels, side, side), np.float32)  # 0..255, resized
    for i, path in enumerate(paths):  # filled in place: no list of arrays beside the stack
        images[i] = decoder.raw(path)
    return build_bundle(
        f"image_folder:{config.root.name}", images, labels, classes, divide_by=255.0, config=config
    )


def _streamed(
    config: ImageFolderConfig, classes: list[str], paths: list[Path], labels: np.ndarray, side: int
) -> DataBundle:
    tr, va, te = stratified_indices(
        labels, config.val_fraction, config.test_fraction, config.split_seed
    )
    mode = "L" if config.channels == 1 else "RGB"
    unit = Decoder(mode, side, 255.0, (0.0,) * config.channels, (1.0,) * config.channels)
    sample = np.random.default_rng(config.split_seed).permutation(tr)[:STATS_SAMPLE]
    # running sums, one image at a time: the memory of one image, not of the sample
    total = np.zeros(config.channels)
    squares = np.zeros(config.channels)
    for i in sample:
        pixels = unit.raw(paths[i]).astype(np.float64)
        total += pixels.sum(axis=(1, 2))
        squares += (pixels**2).sum(axis=(1, 2))
    count = len(sample) * side * side
    variance = (squares - total**2 / count) / max(count - 1, 1)
    mean = tuple(round(float(v), 6) for v in total / count)
    std = tuple(round(max(float(v), 1e-6), 6) for v in np.sqrt(np.maximum(variance, 0.0)))
    decoder = Decoder(mode, side, 255.0, mean, std)
    preprocess = {
        "resize": [side, side],
        "interpolation": "bilinear",
        "divide_by": 255.0,
        "mean": list(mean),
        "std": list(std),
        "channels": config.channels,
    }
    digest = hashlib.sha256()
    for path in paths:  # names, sizes and times: reading every file would cost a whole epoch
        stat = path.stat()
        name = os.fsencode(path.relative_to(config.root))  # any bytes a file system allows
        digest.update(name + f"|{stat.st_size}|{stat.st_mtime_ns}".encode())
    digest.update(labels.tobytes())
    digest.update(
        repr((preprocess, config.val_fraction, config.test_fraction, config.split_seed)).encode()
    )

    def split(idx: np.ndarray) -> StreamedSplit:
        return StreamedSplit(
            tuple(paths[i] for i in idx), torch.from_numpy(labels[idx]), decoder, config.workers
        )

    return DataBundle(
        name=f"image_folder:{config.root.name}",
        train=split(tr),
        val=split(va),
        test=split(te),
        num_classes=len(classes),
        class_names=classes,
        preprocess=preprocess,
        fingerprint=digest.hexdigest()[:16],
        augment=config.augment,
    )
