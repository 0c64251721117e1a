"""IDX, Fashion-MNIST and CIFAR sources on small files the tests write, and real
Fashion-MNIST from Debian's package; every bad file is one UserError naming it."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from automl.data import load_data
from automl.data.cifar import CifarConfig, SafeUnpickler
from automl.data.fashion_mnist import CLASSES, DEBIAN_ROOT, FashionMnistConfig
from automl.data.idx import IdxConfig, read_idx
from automl.errors import UserError
from tests.conftest import cli_in_process, write_config
from tests.data.files import idx_bytes, write_cifar10, write_cifar100, write_idx_set


@pytest.mark.parametrize("gz", [True, False])
def test_idx_keeps_the_official_test_split_and_carves_validation(tmp_path, gz):
    root = write_idx_set(tmp_path / "idx", n_train=60, n_test=30, gz=gz)
    bundle = load_data(IdxConfig(root=root, val_fraction=0.2))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (48, 12, 30)
    assert bundle.image_size == (12, 12) and bundle.in_chans == 1  # native size by default
    assert bundle.class_names == ["0", "1", "2"] and bundle.preprocess["divide_by"] == 255.0
    assert torch.equal(bundle.test.y, torch.arange(30) % 3)  # the test file, in its order
    assert np.bincount(bundle.val.y.numpy()).tolist() == [4, 4, 4]  # stratified
    raw_test = read_idx(next(root.glob("t10k-images*")))
    p = bundle.preprocess
    expected = (torch.from_numpy(raw_test[:, None] / 255.0).float() - p["mean"][0]) / p["std"][0]
    assert torch.allclose(bundle.test.x, expected, atol=1e-5)
    resized = load_data(IdxConfig(root=root, image_size=16))
    assert resized.image_size == (16, 16)


def test_fashion_mnist_from_debians_package():
    """The real files (make test installs dataset-fashion-mnist): 60,000 + 10,000 images."""
    bundle = load_data(FashionMnistConfig())
    assert (len(bundle.train) + len(bundle.val), len(bundle.test)) == (60000, 10000)
    assert len(bundle.val) == 6000 and bundle.image_size == (28, 28)
    assert bundle.class_names == CLASSES and bundle.name == "fashion_mnist"
    assert np.bincount(bundle.test.y.numpy()).tolist() == [1000] * 10
    assert np.bincount(bundle.val.y.numpy()).tolist() == [600] * 10
    assert DEBIAN_ROOT.is_dir()


def test_missing_fashion_mnist_names_the_debian_package(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_data(FashionMnistConfig(root=tmp_path))


def _corrupt(root, name, data):
    (root / name).write_bytes(data)
    return root / name


def test_bad_idx_files_each_name_the_file(tmp_path):
    images = np.zeros((6, 4, 4), np.uint8)
    cases = {
        "magic": (b"\x08\x03" + idx_bytes(images)[2:], "not an IDX file"),
        "truncated": (idx_bytes(images)[:-5], "truncated"),
        "header": (idx_bytes(images)[:9], "truncated inside its header"),
        "gzip": (b"\x1f\x8b\x08garbage", "cannot read"),
    }
    for label, (data, needle) in cases.items():
        root = write_idx_set(tmp_path / label, gz=False)
        name = "train-images-idx3-ubyte" + (".gz" if label == "gzip" else "")
        (root / "train-images-idx3-ubyte").unlink()
        path = _corrupt(root, name, data)
        with pytest.raises(UserError, match=needle) as caught:
            load_data(IdxConfig(root=root))
        assert str(path) in str(caught.value)


def test_label_count_not_matching_images_is_refused(tmp_path):
    root = write_idx_set(tmp_path / "idx", gz=False)
    path = _corrupt(root, "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(UserError, match=r"holds 7 labels but .* holds 30 images") as caught:
        load_data(IdxConfig(root=root))
    assert str(path) in str(caught.value)
    with pytest.raises(UserError, match="none of"):
        load_data(IdxConfig(root=tmp_path / "empty"))
    with pytest.raises(UserError, match="labels run from 0 to 2, but there are 2 classes"):
        load_data(IdxConfig(root=write_idx_set(tmp_path / "n"), class_names=["a", "b"]))


def test_cifar10_and_cifar100_batches(tmp_path):
    ten = load_data(CifarConfig(root=write_cifar10(tmp_path / "c10"), val_fraction=0.25))
    assert ten.name == "cifar10" and ten.class_names == ["class0", "class1", "class2"]
    assert (len(ten.train), len(ten.val), len(ten.test)) == (45, 15, 12)
    assert ten.in_chans == 3 and ten.image_size == (32, 32)
    root = write_cifar100(tmp_path / "c100")
    fine = load_data(CifarConfig(root=root))
    coarse = load_data(CifarConfig(root=root, labels="coarse"))
    assert fine.num_classes == 4 and coarse.class_names == ["fruit", "flowers"]
    assert torch.equal(coarse.test.y, fine.test.y // 2)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    root = write_cifar10(tmp_path / "c10")
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _RunsCode(marker)}
    (root / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(UserError, match=r"refused to read .*data_batch_3: it would load .*system"):
        load_data(CifarConfig(root=root))
    assert not marker.exists()
    # numpy arrays of Python objects could smuggle the same: refused too
    objects = pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="objects are not allowed"):
        import io

        SafeUnpickler(io.BytesIO(objects), encoding="bytes").load()


def test_bad_cifar_files_each_name_the_file(tmp_path):
    cases = {
        "truncated": lambda data: data[: len(data) // 2],
        "foreign": lambda data: gzip.compress(data),
        "list": lambda data: pickle.dumps([1, 2, 3], protocol=2),
        "labels": lambda data: pickle.dumps(
            {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}, protocol=2
        ),
    }
    for label, damage in cases.items():
        root = write_cifar10(tmp_path / label)
        path = root / "data_batch_2"
        path.write_bytes(damage(path.read_bytes()))
        with pytest.raises(UserError) as caught:
            load_data(CifarConfig(root=root))
        assert str(path) in str(caught.value), label
    with pytest.raises(UserError, match="neither CIFAR-10"):
        load_data(CifarConfig(root=tmp_path))


def test_a_bad_data_file_stops_the_command_with_status_2(tmp_path):
    root = write_idx_set(tmp_path / "idx", gz=False)
    path = root / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    raw = {"data": {"type": "idx", "root": str(root)}, "teacher": {"cache_dir": str(tmp_path)}}
    config = write_config(tmp_path / "c.yaml", raw)
    for command in (["teacher"], ["search", "--out", tmp_path / "run"]):
        result = cli_in_process(*command, "--config", config)
        assert result.exit_code == 2 and f"{path} is truncated" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
