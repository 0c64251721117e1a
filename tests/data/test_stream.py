"""Image folders streamed from disk through a DataLoader: the same inputs as in memory, bad
files named when a batch meets them, and a student trained on streamed batches."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from PIL import Image

from automl.data import load_data
from automl.data.image_folder import ImageFolderConfig
from automl.data.stream import StreamedSplit
from automl.errors import UserError
from automl.trial import run_trial
from tests.conftest import make_arch
from tests.data.test_sources import _write_folder


def test_streamed_and_in_memory_folders_give_the_same_inputs(tmp_path):
    root = _write_folder(tmp_path / "imgs", per_class=10)
    memory = load_data(ImageFolderConfig(root=root, image_size=16))
    streamed = load_data(ImageFolderConfig(root=root, image_size=16, stream=True, workers=1))
    assert isinstance(streamed.train, StreamedSplit) and not isinstance(memory.train, StreamedSplit)
    for key, value in memory.preprocess.items():  # float32 sums: equal to 1e-5
        if key in ("mean", "std"):
            assert np.allclose(streamed.preprocess[key], value, atol=1e-5), key
        else:
            assert streamed.preprocess[key] == value, key
    for a, b in ((memory.val, streamed.val), (memory.test, streamed.test)):
        x = torch.cat([x for _, x in b.batches(torch.arange(len(b)), 4)])
        assert torch.equal(a.y, b.y) and torch.allclose(a.x, x, atol=1e-4)
    # auto: a folder larger than stream_above_mb is streamed
    auto = load_data(ImageFolderConfig(root=root, image_size=16, stream_above_mb=0.001))
    assert isinstance(auto.train, StreamedSplit)


def test_a_file_name_that_is_no_utf8_streams_and_fingerprints(tmp_path):
    """Linux file names are bytes: one that is no UTF-8 (a Latin-1 archive) is read, and the
    streamed folder's fingerprint tells it from the same folder with another name."""
    root = _write_folder(tmp_path / "imgs", per_class=10)
    before = load_data(ImageFolderConfig(root=root, image_size=16, stream=True, workers=1))
    first = sorted((root / "dog").glob("*.png"))[0]
    os.rename(os.fsencode(first), os.fsencode(first.parent) + b"/caf\xe9.png")
    after = load_data(ImageFolderConfig(root=root, image_size=16, stream=True, workers=1))
    assert after.fingerprint != before.fingerprint
    x = torch.cat([x for _, x in after.train.batches(torch.arange(len(after.train)), 8)])
    assert x.shape == (len(after.train), 3, 16, 16) and torch.isfinite(x).all()


def test_a_file_that_stops_decoding_is_named_when_a_batch_meets_it(tmp_path):
    root = _write_folder(tmp_path / "imgs", per_class=10)
    bundle = load_data(ImageFolderConfig(root=root, image_size=16, stream=True, workers=2))
    broken = bundle.val.paths[3]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UserError, match=f"cannot read image {broken}"):
        list(bundle.val.batches(torch.arange(len(bundle.val)), 4))


def test_an_empty_class_folder_is_named(tmp_path):
    root = _write_folder(tmp_path / "imgs", per_class=4)
    (root / "yak").mkdir()
    with pytest.raises(UserError, match=f"class folder {root / 'yak'} holds no images"):
        load_data(ImageFolderConfig(root=root))


def test_a_student_trains_on_streamed_batches(tiny, tmp_path):
    """The tiny teacher's own digits, written as PNG files and streamed back."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = tmp_path / "digits" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{i}.png")
    config = ImageFolderConfig(
        root=tmp_path / "digits", image_size=16, channels=1, stream=True, workers=2
    )
    data = load_data(config)
    ctx = dataclasses.replace(tiny.trial_context(), data=data, bank=None)  # online KD
    result, _ = run_trial(make_arch([0.5] * 4, [1, 1, 1, 1], [8] * 4), ctx, seed=0)
    assert result.val_accuracy > 0.6 and result.test_accuracy > 0.6  # chance: 0.1
