"""Data sources, registered by their config's `type`; each returns a DataBundle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from automl.data import cifar, digits, fashion_mnist, idx, image_folder
from automl.data.bundle import DataBundle, Split


def _digits_by_default(raw: Any) -> Any:
    """A data section without `type` means the built-in digits."""
    return {"type": "digits", **raw} if isinstance(raw, dict) and "type" not in raw else raw


DataConfig = Annotated[
    digits.DigitsConfig
    | idx.IdxConfig
    | fashion_mnist.FashionMnistConfig
    | cifar.CifarConfig
    | image_folder.ImageFolderConfig,
    Field(discriminator="type"),
    BeforeValidator(_digits_by_default),
]

_LOADERS: dict[str, Callable[..., DataBundle]] = {
    "digits": digits.load,
    "idx": idx.load,
    "fashion_mnist": fashion_mnist.load,
    "cifar": cifar.load,
    "image_folder": image_folder.load,
}


def load_data(config: DataConfig) -> DataBundle:
    """Load the data set a config names; its `split_seed` fixes the split."""
    return _LOADERS[config.type](config)


def list_data_sources() -> list[str]:
    return sorted(_LOADERS)


__all__ = ["DataBundle", "DataConfig", "Split", "list_data_sources", "load_data"]
