"""CIFAR-10 and CIFAR-100 "python version" batches on disk (Krizhevsky 2009).

The batches are pickles, and unpickling runs whatever a file names. They are read
with `SafeUnpickler`, which builds only what that format holds (dicts, lists,
bytes, ints and uint8 numpy arrays) and refuses any other global, so a file that
would run code is an error that names it, not an exploit.

CIFAR-10 (`cifar-10-batches-py`): data_batch_1..5, test_batch, batches.meta.
CIFAR-100 (`cifar-100-python`): train, test, meta, with fine and coarse labels.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from automl.data.bundle import DataBundle, SourceConfig, build_bundle, check_labels
from automl.errors import UserError
from automl.paths import GivenPath


class CifarConfig(SourceConfig):
    type: Literal["cifar"] = "cifar"
    root: GivenPath = Field(description="cifar-10-batches-py or cifar-100-python, as unpacked")
    labels: Literal["fine", "coarse"] = Field(
        default="fine", description="CIFAR-100 only: 100 fine or 20 coarse classes"
    )


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles written by Python 3 store bytes as `_codecs.encode(text, 'latin1')`."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(name: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy arrays of Python objects are not allowed")
    return dtype


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numeric numpy arrays; refuses every other global."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickled by numpy 1
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickled by numpy 2
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module: str, name: str) -> Any:
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"it would load {module}.{name}; CIFAR batches hold only dicts, lists, bytes "
                "and numpy arrays"
            )
        return found


def read_batch(path: Path) -> dict[str, Any]:
    """One batch as a dict with str keys; anything but the CIFAR format is a UserError."""
    if not path.is_file():
        raise UserError(f"data.root: CIFAR batch not found: {path}")
    try:
        loaded = SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"data: refused to read {path}: {exc}") from None
    except Exception as exc:  # truncated or foreign files raise many types
        raise UserError(
            f"data: {path} is not a CIFAR python batch ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(loaded, dict):
        raise UserError(f"data: {path} holds a {type(loaded).__name__}, not a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in loaded.items()}


def _images_and_labels(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UserError(f"data: {path} has no uint8 'data' array of shape (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise UserError(f"data: {path}: 'data' rows hold {data.shape[1]} values, not 3072")
    if labels is None:
        raise UserError(f"data: {path} has no '{label_key}' entry")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise UserError(f"data: {path} holds {len(labels)} labels but {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


def _names(path: Path, key: str) -> list[str]:
    names = read_batch(path).get(key)
    if not isinstance(names, list) or not names:
        raise UserError(f"data: {path} has no '{key}' list of class names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load(config: CifarConfig) -> DataBundle:
    root = config.root
    if (root / "data_batch_1").is_file():
        train_files = [root / f"data_batch_{k}" for k in range(1, 6)]
        test_file, label_key, names_key, meta = (
            root / "test_batch",
            "labels",
            "label_names",
            root / "batches.meta",
        )
        name = "cifar10"
    elif (root / "train").is_file():
        train_files, test_file, meta = [root / "train"], root / "test", root / "meta"
        label_key = f"{config.labels}_labels"
        names_key = f"{config.labels}_label_names"
        name = "cifar100"
    else:
        raise UserError(
            f"data.root: {root} holds neither CIFAR-10 (data_batch_1 ... data_batch_5, "
            "test_batch) nor CIFAR-100 (train, test) python batches"
        )
    parts = [_images_and_labels(path, label_key) for path in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _images_and_labels(test_file, label_key)
    names = _names(meta, names_key)
    check_labels(train_y, names, f"data: {root} (train)")
    check_labels(test_y, names, f"data: {root} (test)")
    return build_bundle(
        name, train_x, train_y, names, divide_by=255.0, config=config, test=(test_x, test_y)
    )
