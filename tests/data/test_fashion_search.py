"""Real data end to end: a proxy search and finalize on 2,000 real Fashion-MNIST images (IDX
files written from Debian's package), augmented, through the command line."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from automl.data.fashion_mnist import CLASSES
from automl.data.idx import find_file, read_idx
from tests.conftest import cli, write_config
from tests.data.files import idx_bytes

pytestmark = pytest.mark.slow


def _fashion_subset(root, n_train: int, n_test: int) -> None:
    from automl.data.fashion_mnist import DEBIAN_ROOT

    root.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        images = read_idx(find_file(DEBIAN_ROOT, split, "images"))[:n]
        labels = read_idx(find_file(DEBIAN_ROOT, split, "labels"))[:n]
        stem = "train" if split == "train" else "t10k"
        for kind, rank, array in (("images", 3, images), ("labels", 1, labels)):
            data = idx_bytes(np.ascontiguousarray(array))
            (root / f"{stem}-{kind}-idx{rank}-ubyte.gz").write_bytes(gzip.compress(data))


def test_a_proxy_search_on_real_fashion_mnist(tmp_path):
    _fashion_subset(tmp_path / "fashion", 2000, 500)
    raw = {
        "name": "fashion",
        "device": "cpu",
        "out": str(tmp_path / "run"),
        "data": {
            "type": "idx",
            "root": str(tmp_path / "fashion"),
            "class_names": CLASSES,
            "augment": {"crop_padding": 2, "flip": True},
        },
        "teacher": {
            "model": "resnet18",
            "epochs": 3,
            "batch_size": 128,
            "cache_dir": str(tmp_path / "teachers"),
        },
        "search_space": {"name": "uniform"},
        "training": {
            "epochs": 1,
            "train_subset": 600,
            "final_epochs": 1,
            "kd_views": 2,
            "augment": True,
        },
        "latency": {"warmup": 1, "repeats": 30},
        "search": {"budget": 2, "sampler": "random"},
    }
    result = cli("search", "--config", write_config(tmp_path / "c.yaml", raw), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "finalized:" in result.stdout and "Kendall tau" in result.stdout
    # progress for every long step, as plain lines (the output is no terminal)
    progress = result.stderr
    assert "teacher resnet18: epoch 3/3, loss " in progress and " s left" in progress
    assert "teacher logits: view 2/2 done" in progress
    assert "2 trials to run; training alone takes " in progress
    assert "finalize 1/" in progress
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    pareto = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert (run["data"]["train"], run["data"]["val"], run["data"]["test"]) == (1800, 200, 500)
    assert pareto["teacher"]["test_accuracy"] > 0.7  # ten classes: chance is 0.1
    assert pareto["finalized"]["train_images"] == 1800
    assert pareto["finalized"]["proxy_train_images"] == 600
    assert all(m["test_accuracy"] > 0.5 for m in pareto["front"])
    teacher_dir = next((tmp_path / "teachers" / "resnet18").iterdir())
    assert (teacher_dir / "views2.safetensors").is_file()  # K=2 cached augmented views
