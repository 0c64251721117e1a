"""MNIST-family IDX files (MNIST, Fashion-MNIST, KMNIST): four files, gzip or raw, in `root`.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a
type code (0x08 unsigned byte ... 0x0E double), the number of dimensions, then one
big-endian 32-bit size per dimension and the values. The official test split stays
the test split; validation is carved from the training images.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from automl.data.bundle import DataBundle, SourceConfig, build_bundle, check_labels
from automl.errors import UserError
from automl.paths import GivenPath

# type code -> big-endian numpy dtype
IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
# (images, labels) stems per split; mirrors differ in '-' or '.' before idx
STEMS = {"train": "train", "test": "t10k"}


class IdxConfig(SourceConfig):
    type: Literal["idx"] = "idx"
    root: GivenPath = Field(
        description="folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
    )
    class_names: list[str] | None = Field(
        default=None, description="one per label value; default: the label values"
    )


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds (gzip or raw); a malformed file is a UserError naming it."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"data: cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise UserError(
            f"data: {path} is not an IDX file (magic number 0x{raw[:4].hex() or '-'}; expected "
            f"0x0000, a type code in {', '.join(f'{k:02x}' for k in IDX_TYPES)}, then the number "
            "of dimensions)"
        )
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"data: {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(
            f"data: {path} is truncated or padded: its header promises shape {shape} "
            f"({expected} bytes of values), the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_file(root: Path, split: str, kind: Literal["images", "labels"]) -> Path:
    """The file of one split and kind in `root`, gzip or raw, '-idx' or '.idx' naming."""
    rank = 3 if kind == "images" else 1
    names = [
        f"{STEMS[split]}-{kind}{sep}idx{rank}-ubyte{ext}" for sep in "-." for ext in (".gz", "")
    ]
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root} has none of {', '.join(names)}")


def read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels (N,) of one split, checked against each other."""
    images_path, labels_path = find_file(root, split, "images"), find_file(root, split, "labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise UserError(f"data: {images_path} holds shape {images.shape}; images are (N, H, W)")
    if labels.ndim != 1:
        raise UserError(f"data: {labels_path} holds shape {labels.shape}; labels are (N,)")
    if len(images) != len(labels):
        raise UserError(
            f"data: {labels_path} holds {len(labels)} labels but {images_path} holds "
            f"{len(images)} images"
        )
    return images[:, None, :, :], labels.astype(np.int64)


def load(config: IdxConfig, name: str = "", missing_hint: str = "") -> DataBundle:
    """The bundle of the IDX files in `config.root`; `missing_hint` ends a missing-file message."""
    root = config.root
    try:
        train_x, train_y = read_split(root, "train")
        test_x, test_y = read_split(root, "test")
    except FileNotFoundError as exc:
        raise UserError(f"data.root: {exc}{missing_hint}") from None
    names = config.class_names or [str(k) for k in range(int(max(train_y.max(), test_y.max())) + 1)]
    check_labels(train_y, names, f"data: {root} (train)")
    check_labels(test_y, names, f"data: {root} (test)")
    divide_by = 255.0 if train_x.dtype == np.uint8 else 1.0
    return build_bundle(
        name or f"idx:{root.name}",
        train_x,
        train_y,
        names,
        divide_by=divide_by,
        config=config,
        test=(test_x, test_y),
    )
