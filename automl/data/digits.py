"""scikit-learn's digits: 1,797 grey 8x8 images with values 0..16, shipped inside the package."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from sklearn.datasets import load_digits

from automl.data.bundle import DataBundle, HeldOutTest, build_bundle


class DigitsConfig(HeldOutTest):
    type: Literal["digits"] = "digits"
    image_size: Annotated[int | None, Field(ge=8, le=512, description="8x8 upscaled")] = 32
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2


def load(config: DigitsConfig) -> DataBundle:
    digits = load_digits()
    images = digits.images[:, None, :, :].astype(np.float32)  # (N, 1, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    names = [str(c) for c in digits.target_names]
    return build_bundle("digits", images, labels, names, divide_by=16.0, config=config)
