"""An image folder on disk: one sub-folder per class, images inside (png, jpg, bmp, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from automl.data.bundle import DataBundle, HeldOutTest, build_bundle, check_labels
from automl.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ImageFolderConfig(HeldOutTest):
    type: Literal["image_folder"] = "image_folder"
    root: Path
    channels: Literal[1, 3] = 3
    image_size: Annotated[int | None, Field(ge=8, le=512, description="side after resize")] = 32
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2


def load(config: ImageFolderConfig) -> DataBundle:
    root = config.root
    if not root.is_dir():
        raise UserError(f"data.root: image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"data.root: {root} needs at least 2 class sub-folders, found {classes}")
    mode = "L" if config.channels == 1 else "RGB"
    side = config.image_size or 32
    size = (side, side)
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
    labels_array = np.asarray(labels, dtype=np.int64)
    check_labels(labels_array, classes, f"data.root: {root}")
    return build_bundle(
        f"image_folder:{root.name}",
        np.stack(images).astype(np.float32),
        labels_array,
        classes,
        divide_by=255.0,
        config=config,
    )
