"""Data sources: one contract over every registered source, then what each one does."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl.data import DataBundle, list_data_sources, load_data
from automl.data.cifar import CifarConfig
from automl.data.digits import DigitsConfig
from automl.data.fashion_mnist import FashionMnistConfig
from automl.data.idx import IdxConfig
from automl.data.image_folder import ImageFolderConfig
from automl.data.stream import Decoder
from automl.errors import UserError
from tests.data.files import write_cifar10, write_idx_set

# A small real input for each registered source; a source missing here fails the suite.
SOURCES: dict[str, Callable[[Path], object]] = {
    "digits": lambda tmp: DigitsConfig(image_size=16),
    "idx": lambda tmp: IdxConfig(root=write_idx_set(tmp / "idx")),
    "fashion_mnist": lambda tmp: FashionMnistConfig(),  # Debian's dataset-fashion-mnist
    "cifar": lambda tmp: CifarConfig(root=write_cifar10(tmp / "c10"), val_fraction=0.25),
    "image_folder": lambda tmp: ImageFolderConfig(
        root=_write_folder(tmp / "imgs", per_class=10), image_size=16, channels=3
    ),
}


# Ways of reading a source beyond its default, held to the same contract.
VARIANTS: dict[str, Callable[[Path], object]] = {
    **SOURCES,
    "image_folder, streamed": lambda tmp: ImageFolderConfig(
        root=_write_folder(tmp / "imgs", per_class=10), image_size=16, stream=True, workers=1
    ),
}


def test_every_registered_source_is_in_the_contract():
    assert sorted(SOURCES) == list_data_sources()


def _all(split) -> torch.Tensor:
    return torch.cat([x for _, x in split.batches(torch.arange(len(split)), 64)])


@pytest.mark.parametrize("source", VARIANTS)
def test_source_contract(source, tmp_path):
    config = VARIANTS[source](tmp_path)
    other_split = config.model_copy(update={"split_seed": config.split_seed + 1})
    a, b, other = load_data(config), load_data(config), load_data(other_split)
    assert isinstance(a, DataBundle) and a.num_classes == len(a.class_names) >= 2
    splits = (a.train, a.val, a.test)
    inputs = [_all(split) for split in splits]
    for split, x in zip(splits, inputs, strict=True):
        assert x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert x.shape[1:] == split.shape == (a.in_chans, *a.image_size) and len(split) > 0
        assert torch.equal(split.images(torch.tensor([2, 0])), x[[2, 0]])
        assert set(split.y.tolist()) == set(range(a.num_classes))  # stratified: every class
    assert abs(float(inputs[0].mean())) < 0.05  # normalised on the training split
    assert set(a.preprocess) == {"resize", "interpolation", "divide_by", "mean", "std", "channels"}
    assert len(a.preprocess["mean"]) == a.in_chans == a.preprocess["channels"]
    # The split is fixed by the seed, and no image is in two splits.
    assert torch.equal(inputs[1], _all(b.val)) and a.fingerprint == b.fingerprint
    assert a.fingerprint != other.fingerprint
    rows = [{row.numpy().tobytes() for row in x} for x in inputs]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])


def test_digits_split_is_stratified_fixed_by_seed_and_normalised():
    a = load_data(DigitsConfig(image_size=32))
    b = load_data(DigitsConfig(image_size=32))
    c = load_data(DigitsConfig(image_size=32, split_seed=1))
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert (len(a.val), len(a.test)) == (360, 360)
    assert a.train.x.shape[1:] == (1, 32, 32) and a.num_classes == 10
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x) and a.fingerprint != c.fingerprint
    for split in (a.train, a.val, a.test):
        share = np.bincount(split.y.numpy(), minlength=10) / len(split)
        assert np.all(np.abs(share - 0.1) < 0.02)
    assert abs(float(a.train.x.mean())) < 1e-4 and abs(float(a.train.x.std()) - 1) < 1e-2
    assert a.preprocess == {
        "resize": [32, 32],
        "interpolation": "bilinear",
        "divide_by": 16.0,
        "mean": a.preprocess["mean"],
        "std": a.preprocess["std"],
        "channels": 1,
    }


def test_preprocess_turns_raw_digits_into_the_model_input():
    from sklearn.datasets import load_digits

    bundle = load_data(DigitsConfig(image_size=16))
    p = bundle.preprocess
    raw = torch.from_numpy(load_digits().images[:, None].astype(np.float32))
    x = torch.nn.functional.interpolate(raw / p["divide_by"], size=p["resize"], mode="bilinear")
    x = (x - torch.tensor(p["mean"])[None, :, None, None]) / torch.tensor(p["std"])[
        None, :, None, None
    ]
    train_rows = {tuple(r.flatten().round(decimals=4).tolist()) for r in x}
    assert tuple(bundle.train.x[0].flatten().round(decimals=4).tolist()) in train_rows


def _write_folder(root, classes=("cat", "dog", "owl"), per_class=6, size=12) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((size, size, 3)) * 60 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_loads_classes_channels_and_size(tmp_path):
    _write_folder(tmp_path / "imgs")
    bundle = load_data(ImageFolderConfig(root=tmp_path / "imgs", image_size=16, channels=3))
    assert bundle.class_names == ["cat", "dog", "owl"]
    assert bundle.train.x.shape[1:] == (3, 16, 16)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 18
    assert bundle.preprocess["divide_by"] == 255.0
    grey = load_data(ImageFolderConfig(root=tmp_path / "imgs", image_size=8, channels=1))
    assert grey.in_chans == 1 and "image_folder" in list_data_sources()


def test_hidden_entries_are_ignored_and_other_files_counted_once(tmp_path, caplog):
    root = _write_folder(tmp_path / "imgs")
    (root / ".ipynb_checkpoints").mkdir()  # a hidden folder is no class
    (root / ".ipynb_checkpoints" / "0.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "dog" / ".DS_Store").write_bytes(b"\0")
    (root / "owl" / "drafts").mkdir()
    with caplog.at_level("WARNING", logger="automl.data.image_folder"):
        bundle = load_data(ImageFolderConfig(root=root, image_size=8))
    assert bundle.class_names == ["cat", "dog", "owl"]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 18
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "skipped 2 entries that are no images" in warnings[0]


def test_image_folder_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        load_data(ImageFolderConfig(root=tmp_path / "missing"))
    _write_folder(tmp_path / "few", per_class=2)
    with pytest.raises(UserError, match="at least 3 images"):
        load_data(ImageFolderConfig(root=tmp_path / "few"))
    _write_folder(tmp_path / "broken")
    (tmp_path / "broken" / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image"):
        load_data(ImageFolderConfig(root=tmp_path / "broken"))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares `width` x `height` 8-bit greyscale pixels and holds none."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_every_bit_depth_decodes_to_its_brightness(tmp_path, mode):
    """A 16-bit greyscale PNG reads as its 8-bit copy does (Pillow's own convert clips it to
    white); 32-bit float pixels, whose white no file states, and a decompression bomb are
    refused by name."""
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "flat.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    decoder = Decoder(mode, 32, 255.0, (0.0,), (1.0,))
    deep, flat = decoder.raw(tmp_path / "deep.png"), decoder.raw(tmp_path / "flat.png")
    assert deep.shape == flat.shape == ((1 if mode == "L" else 3), 32, 32)
    assert 0.45 < deep.mean() < 0.55 and np.abs(deep - flat).max() <= 1 / 255 + 1e-6
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(UserError, match=r"float.tif is of mode F .* save it with 8 or 16 bits"):
        decoder.raw(tmp_path / "float.tif")
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(UserError, match=r"cannot read image .*bomb.png: .*decompression bomb"):
        decoder.raw(tmp_path / "bomb.png")
