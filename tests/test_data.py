from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from automl.data import list_data_sources, load_data
from automl.data.digits import DigitsConfig
from automl.data.image_folder import ImageFolderConfig
from automl.errors import UserError


def test_digits_split_is_stratified_fixed_by_seed_and_normalised():
    a = load_data(DigitsConfig(image_size=32), seed=0)
    b = load_data(DigitsConfig(image_size=32), seed=0)
    c = load_data(DigitsConfig(image_size=32), seed=1)
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

    bundle = load_data(DigitsConfig(image_size=16), seed=0)
    p = bundle.preprocess
    raw = torch.from_numpy(load_digits().images[:, None].astype(np.float32))
    x = torch.nn.functional.interpolate(raw / p["divide_by"], size=p["resize"], mode="bilinear")
    x = (x - torch.tensor(p["mean"])[None, :, None, None]) / torch.tensor(p["std"])[
        None, :, None, None
    ]
    train_rows = {tuple(r.flatten().round(decimals=4).tolist()) for r in x}
    assert tuple(bundle.train.x[0].flatten().round(decimals=4).tolist()) in train_rows


def _write_folder(root, classes=("cat", "dog", "owl"), per_class=6, size=12):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((size, size, 3)) * 60 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")


def test_image_folder_loads_classes_channels_and_size(tmp_path):
    _write_folder(tmp_path / "imgs")
    bundle = load_data(ImageFolderConfig(root=tmp_path / "imgs", image_size=16, channels=3), 0)
    assert bundle.class_names == ["cat", "dog", "owl"]
    assert bundle.train.x.shape[1:] == (3, 16, 16)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 18
    assert bundle.preprocess["divide_by"] == 255.0
    grey = load_data(ImageFolderConfig(root=tmp_path / "imgs", image_size=8, channels=1), 0)
    assert grey.in_chans == 1 and "image_folder" in list_data_sources()


def test_image_folder_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        load_data(ImageFolderConfig(root=tmp_path / "missing"), 0)
    _write_folder(tmp_path / "few", per_class=2)
    with pytest.raises(UserError, match="at least 3 images"):
        load_data(ImageFolderConfig(root=tmp_path / "few"), 0)
    _write_folder(tmp_path / "broken")
    (tmp_path / "broken" / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image"):
        load_data(ImageFolderConfig(root=tmp_path / "broken"), 0)
