"""An image folder on disk: one sub-folder per class, images inside (png, jpg, bmp, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from automl.data.bundle import DataBundle, build_bundle
from automl.data.digits import SplitFractions
from automl.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ImageFolderConfig(SplitFractions):
    type: Literal["image_folder"] = "image_folder"
    root: Path
    channels: Literal[1, 3] = 3


def load(config: ImageFolderConfig, seed: int) -> DataBundle:
    root = config.root
    if not root.is_dir():
        raise UserError(f"data.root: image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"data.root: {root} needs at least 2 class sub-folders, found {classes}")
    mode = "L" if config.channels == 1 else "RGB"
    size = (config.image_size, config.image_size)
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as img:
                    pixels = np.asarray(img.convert(mode).resize(size, Image.BILINEAR))
            except (UnidentifiedImageError, OSError) as exc:
                raise UserError(f"data.root: cannot read image {path}: {exc}") from None
            images.append(pixels.reshape(size[0], size[1], config.channels).transpose(2, 0, 1))
            labels.append(label)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    if counts.min() < 3:
        raise UserError(
            f"data.root: every class needs at least 3 images for a stratified split; "
            f"counts: {dict(zip(classes, counts.tolist(), strict=True))}"
        )
    return build_bundle(
        f"image_folder:{root.name}",
        np.stack(images).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        classes,
        divide_by=255.0,
        image_size=config.image_size,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=seed,
    )
