"""Data sources, registered by their config's `type`; each returns a DataBundle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from automl.data import digits, image_folder
from automl.data.bundle import DataBundle, Split


def _digits_by_default(raw: Any) -> Any:
    """A data section without `type` means the built-in digits."""
    return {"type": "digits", **raw} if isinstance(raw, dict) and "type" not in raw else raw


DataConfig = Annotated[
    digits.DigitsConfig | image_folder.ImageFolderConfig,
    Field(discriminator="type"),
    BeforeValidator(_digits_by_default),
]

_LOADERS: dict[str, Callable[..., DataBundle]] = {
    "digits": digits.load,
    "image_folder": image_folder.load,
}


def load_data(config: DataConfig, seed: int) -> DataBundle:
    """Load the data set a config names; the split is fixed by `seed`."""
    return _LOADERS[config.type](config, seed)


def list_data_sources() -> list[str]:
    return sorted(_LOADERS)


__all__ = ["DataBundle", "DataConfig", "Split", "list_data_sources", "load_data"]
