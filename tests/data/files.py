"""Small data files in the formats the sources read, written by the tests themselves."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes: magic (0, 0, type code, ndim), big-endian sizes, values."""
    code = IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_idx_set(
    root: Path, n_train: int = 60, n_test: int = 30, classes: int = 3, gz: bool = True
) -> Path:
    """Four MNIST-style files: class k images are bright in row band k, so they are learnable."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % classes).astype(np.uint8)
        images = (rng.random((n, 12, 12)) * 80).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 4 * k : 4 * k + 4] += 150
        for kind, rank, array in (("images", 3, images), ("labels", 1, labels)):
            data = idx_bytes(array)
            name = f"{stem}-{kind}-idx{rank}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
    return root


def cifar_batch(n: int, classes: int, label_key: str = "labels", seed: int = 0) -> dict:
    """A CIFAR python batch as the original pickles hold it (bytes keys, uint8 rows)."""
    rng = np.random.default_rng(seed)
    labels = [int(k) for k in np.arange(n) % classes]
    data = (rng.random((n, 3072)) * 100).astype(np.uint8)
    for i, k in enumerate(labels):
        data[i, k * 100 : k * 100 + 100] = 255
    return {
        b"batch_label": b"testing batch",
        label_key.encode(): labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar10(root: Path, per_batch: int = 12, classes: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k in range(1, 6):
        _dump(root / f"data_batch_{k}", cifar_batch(per_batch, classes, seed=k))
    _dump(root / "test_batch", cifar_batch(per_batch, classes, seed=9))
    names = [f"class{k}".encode() for k in range(classes)]
    _dump(root / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return root


def write_cifar100(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, seed in (("train", 1), ("test", 2)):
        batch = cifar_batch(n, 4, "fine_labels", seed)
        batch[b"coarse_labels"] = [k // 2 for k in batch[b"fine_labels"]]
        _dump(root / name, batch)
    meta = {
        b"fine_label_names": [b"apple", b"pear", b"rose", b"tulip"],
        b"coarse_label_names": [b"fruit", b"flowers"],
    }
    _dump(root / "meta", meta)
    return root


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))  # as the Python 2 originals
