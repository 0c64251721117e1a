"""Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test grey 28x28 images of ten
kinds of clothing, from Debian's package `dataset-fashion-mnist` unless `root` says otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from automl.data import idx
from automl.data.bundle import DataBundle
from automl.paths import GivenPath

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


class FashionMnistConfig(idx.IdxConfig):
    type: Literal["fashion_mnist"] = "fashion_mnist"  # type: ignore[assignment]
    root: GivenPath = Field(default=DEBIAN_ROOT, description="where the four IDX files are")
    class_names: list[str] | None = Field(default=CLASSES, description="the ten classes")


def load(config: FashionMnistConfig) -> DataBundle:
    hint = (
        "; Fashion-MNIST comes with Debian's package dataset-fashion-mnist "
        "(sudo apt-get install dataset-fashion-mnist), or set data.root to a folder with its "
        "four IDX files"
    )
    return idx.load(config, "fashion_mnist", hint)
