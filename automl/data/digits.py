"""scikit-learn's digits: 1,797 grey 8x8 images with values 0..16, shipped inside the package."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.datasets import load_digits

from automl.data.bundle import DataBundle, build_bundle


class SplitFractions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_size: Annotated[int, Field(ge=8, le=512, description="side after bilinear resize")] = 32
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitFractions:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "`val_fraction + test_fraction < 0.9` must hold, but got "
                f"(val_fraction={self.val_fraction}, test_fraction={self.test_fraction})"
            )
        return self


class DigitsConfig(SplitFractions):
    type: Literal["digits"] = "digits"


def load(config: DigitsConfig, seed: int) -> DataBundle:
    digits = load_digits()
    images = digits.images[:, None, :, :].astype(np.float32)  # (N, 1, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    return build_bundle(
        "digits",
        images,
        labels,
        [str(c) for c in digits.target_names],
        divide_by=16.0,
        image_size=config.image_size,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=seed,
    )
