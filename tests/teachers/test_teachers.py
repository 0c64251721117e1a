from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from automl.augment import AugmentConfig
from automl.data import load_data
from automl.data.bundle import Split
from automl.errors import UserError
from automl.experiment import prepare
from automl.training import Batch, accuracy
from teachers.cache import (
    PROGRESS_IMAGES,
    RunningLoss,
    cache_path,
    epoch_progress,
    fingerprint,
    get_teacher,
)
from teachers.load import create_teacher
from teachers.spec import TeacherConfig


def test_a_short_recipe_trains_an_accurate_teacher(tiny):
    """Six epochs on 16x16 digits: the training loop works (the shipped 30-epoch recipe's
    accuracy is checked by benchmarks/end_to_end.py, which `make search` users run)."""
    teacher, data = tiny.teacher, tiny.data
    assert teacher.card.test_accuracy >= 0.95 and teacher.card.val_accuracy >= 0.95
    assert teacher.train_logits.shape == (len(data.train), 10)
    state = teacher.model.state_dict().items()
    assert not [k for k, v in state if v.is_floating_point() and not v.isfinite().all()]


def test_the_cache_keeps_the_weights_of_the_first_epoch_for_rewinding(tiny):
    teacher, data = tiny.teacher, tiny.data
    assert teacher.card.rewind_epoch == 1
    early = teacher.rewind_state()
    final = teacher.model.state_dict()
    assert early.keys() == final.keys()
    assert all(early[k].shape == final[k].shape for k in final)
    moved = [
        k for k in final if final[k].is_floating_point() and not torch.equal(early[k], final[k])
    ]
    assert "conv1.weight" in moved and "fc.weight" in moved  # five more epochs changed them
    rewound = create_teacher("resnet18", data.in_chans, data.num_classes)
    rewound.load_state_dict(early)
    val = accuracy(rewound.eval(), data.val, torch.device("cpu"))
    assert val < teacher.card.val_accuracy  # an early point of training, not the result


def test_teacher_training_reports_each_epoch(tiny, caplog):
    loss = RunningLoss(lambda logits, batch: {"loss": logits.mean()})
    model, val = tiny.teacher.model, tiny.data.val
    on_epoch = epoch_progress(model, "resnet18", 4, val, torch.device("cpu"), loss)
    for batch_loss, images in ((1.0, 3), (2.0, 1)):  # the epoch's mean is per image: 1.25
        loss(torch.full((images, 2), batch_loss), Batch(None, torch.zeros(images), None, None))
    with caplog.at_level("INFO", logger="teachers.cache"):
        assert on_epoch(1) is False and on_epoch(2) is False
    lines = [r.getMessage() for r in caplog.records]
    val_accuracy, images = tiny.teacher.card.val_accuracy, len(val)
    assert images <= PROGRESS_IMAGES  # all of them
    assert lines[0].startswith(
        f"teacher resnet18: epoch 1/4, loss 1.2500, val accuracy ({images} images) "
        f"{val_accuracy:.4f}, "
    )
    assert lines[1].startswith("teacher resnet18: epoch 2/4, loss 0.0000,")  # taken, then reset
    assert lines[1].endswith(" s left")


def test_teacher_progress_scores_a_fixed_sample_of_a_large_validation_split(caplog):
    class Seen(torch.nn.Module):  # predicts class 0; counts the images it scores
        def __init__(self):
            super().__init__()
            self.images = []

        def forward(self, x):
            self.images.append(x.flatten(1)[:, 0].clone())
            return torch.tensor([1.0, 0.0]).expand(len(x), 2)

    n = 3 * PROGRESS_IMAGES
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)  # each image is its index
    y = (torch.arange(n) >= n // 3).long()  # class 0: the first third
    model = Seen()
    on_epoch = epoch_progress(model, "m", 2, Split(x, y), torch.device("cpu"))
    scored = []
    with caplog.at_level("INFO", logger="teachers.cache"):
        for epoch in (1, 2):
            on_epoch(epoch)
            scored.append(torch.cat(model.images))
            model.images.clear()
    first, second = scored
    assert len(first) == PROGRESS_IMAGES and len(first.unique()) == PROGRESS_IMAGES
    assert torch.equal(first, second)  # the same sample each epoch
    assert first.max() >= 2 * PROGRESS_IMAGES  # drawn from the whole split, not its head
    share = float((first < n // 3).float().mean())  # the sample's accuracy: its class-0 share
    lines = [r.getMessage() for r in caplog.records]
    assert f"val accuracy ({PROGRESS_IMAGES} images) {share:.4f}," in lines[0]
    assert abs(share - 1 / 3) < 0.05


def test_cached_teacher_is_reused_without_training(tiny):
    config, data, teacher = tiny.config, tiny.data, tiny.teacher
    directory = cache_path(config.teacher, teacher.card.fingerprint)
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    again = get_teacher(config.teacher, data, torch.device("cpu"))
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.card == teacher.card
    assert torch.equal(again.train_logits, teacher.train_logits)
    card = json.loads((directory / "card.json").read_text())
    assert {"model", "val_accuracy", "test_accuracy", "fingerprint"} <= set(card)


def test_the_cache_keeps_one_teacher_per_fingerprint(tiny, tmp_path):
    config, data = tiny.config, tiny.data
    base = fingerprint(config.teacher, data)
    assert fingerprint(config.teacher.model_copy(update={"epochs": 3}), data) != base
    assert fingerprint(config.teacher.model_copy(update={"seed": 1}), data) != base
    assert fingerprint(config.teacher.model_copy(update={"small_input": True}), data) != base
    flipped = dataclasses.replace(data, augment=AugmentConfig(flip=True))
    assert fingerprint(config.teacher, flipped) != base
    erasing = dataclasses.replace(data, augment=AugmentConfig(flip=True, erase=0.5))
    assert fingerprint(config.teacher, erasing) != fingerprint(config.teacher, flipped)
    # erase 0 is left out, so teachers cached before the option keep their entries
    before = json.loads(json.dumps(config.teacher.model_dump(mode="json", exclude={"cache_dir"})))
    del before["small_input"]
    payload = {
        "recipe": before,
        "data": data.fingerprint,
        "in_chans": data.in_chans,
        "num_classes": data.num_classes,
        "augment": {"crop_padding": 0, "flip": True},
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert fingerprint(config.teacher, flipped) == digest
    other_split = load_data(config.data.model_copy(update={"split_seed": 1}))
    assert fingerprint(config.teacher, other_split) != base
    spec = config.teacher.model_copy(update={"cache_dir": tmp_path, "epochs": 1})
    first = get_teacher(spec, data, torch.device("cpu"))
    changed = spec.model_copy(update={"lr": 1e-3})  # same cache folder, other recipe
    second = get_teacher(changed, data, torch.device("cpu"))
    assert second.card.fingerprint != first.card.fingerprint
    # Switching back and forth trains neither again: each has its own entry.
    stamps = {
        t.card.fingerprint: (t.cache_dir / "model.safetensors").stat().st_mtime_ns
        for t in (first, second)
    }
    for recipe in (spec, changed):
        again = get_teacher(recipe, data, torch.device("cpu"))
        assert (again.cache_dir / "model.safetensors").stat().st_mtime_ns == stamps[
            again.card.fingerprint
        ]
    assert sorted(p.name for p in (tmp_path / "resnet18").iterdir()) == sorted(stamps)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_user_checkpoint_is_loaded_not_retrained(tiny, tmp_path, suffix):
    data, teacher = tiny.data, tiny.teacher
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in teacher.model.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    spec = TeacherConfig(model="resnet18", checkpoint=path, epochs=0, cache_dir=tmp_path / "c")
    loaded = get_teacher(spec, data, torch.device("cpu"))
    assert loaded.card.source == f"checkpoint:{path}"
    assert loaded.card.val_accuracy == pytest.approx(teacher.card.val_accuracy)


def test_small_input_drops_the_stems_first_downsampling_and_keeps_the_parameters():
    x = torch.randn(2, 1, 28, 28)
    for name in ("resnet18", "mobilenetv3_small_050"):  # a max-pool, a stride-2 convolution
        plain = create_teacher(name, 1, 10).eval()
        small = create_teacher(name, 1, 10, small_input=True).eval()
        small.load_state_dict(plain.state_dict())
        with torch.no_grad():
            a, b = plain.forward_features(x), small.forward_features(x)
        assert b.shape[-2:] == (2 * a.shape[-2], 2 * a.shape[-1]), name
    with pytest.raises(UserError, match=r"'convnext_atto' has a first stride of \(4, 4\)"):
        create_teacher("convnext_atto", 1, 10, small_input=True)


def test_a_small_input_teacher_comes_back_from_the_cache_with_its_stem(tiny, tmp_path):
    spec = tiny.config.teacher.model_copy(
        update={"cache_dir": tmp_path, "epochs": 1, "small_input": True}
    )
    first = get_teacher(spec, tiny.data, torch.device("cpu"))
    again = get_teacher(spec, tiny.data, torch.device("cpu"))
    assert again.card.recipe["small_input"] is True
    x = tiny.data.example_input(4)
    with torch.no_grad():
        assert torch.allclose(again.model(x), first.model(x), atol=1e-5)


def test_bad_checkpoints_and_names_are_user_errors(tiny, tmp_path):
    data = tiny.data
    cpu = torch.device("cpu")
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\x00garbage")
    cases = [
        (TeacherConfig(checkpoint=tmp_path / "none.pt", cache_dir=tmp_path), "file not found"),
        (TeacherConfig(checkpoint=corrupt, cache_dir=tmp_path), "cannot read"),
        (TeacherConfig(model="resnet19", cache_dir=tmp_path), "did you mean"),
    ]
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(wrong))
    cases.append((TeacherConfig(checkpoint=wrong, cache_dir=tmp_path), "does not fit"))
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": argparse.Namespace(layers=3)}, pickled)  # pickled code, not tensors
    cases.append((TeacherConfig(checkpoint=pickled, cache_dir=tmp_path), "weights-only"))
    for spec, needle in cases:
        with pytest.raises(UserError, match=needle):
            get_teacher(spec, data, cpu)


def test_hub_weights_offline_give_a_clear_message():
    # The hub reads HF_HUB_OFFLINE at import, so this runs in a fresh interpreter.
    code = (
        "from teachers.load import create_teacher\n"
        "from automl.errors import UserError\n"
        "try:\n    create_teacher('resnet18', 1, 10, pretrained=True)\n"
        "except UserError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert "teacher.checkpoint to a local file" in result.stdout, result.stderr


def test_a_checkpoint_for_other_classes_gets_a_new_classifier_and_is_fine_tuned(tiny, tmp_path):
    data = tiny.data
    path = tmp_path / "imagenet_like.safetensors"
    other = create_teacher("resnet18", data.in_chans, 7)  # a checkpoint for 7 classes
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    spec = TeacherConfig(checkpoint=path, epochs=0, cache_dir=tmp_path / "c")
    with pytest.raises(UserError, match=r"classifier for another class count \(fc.weight, fc.bias"):
        get_teacher(spec, data, torch.device("cpu"))
    tuned = get_teacher(spec.model_copy(update={"epochs": 1}), data, torch.device("cpu"))
    assert tuned.card.source == f"checkpoint:{path}+new-classifier+trained"
    assert tuned.model.fc.out_features == 10
    body = "layer1.0.conv1.weight"  # fine-tuned from the checkpoint, not from scratch
    moved = tuned.model.state_dict()[body] - other.state_dict()[body]
    assert 0 < float(moved.abs().mean()) < float(other.state_dict()[body].abs().mean())


def test_a_search_seed_leaves_the_teacher_alone(tiny):
    config = tiny.config.model_copy(update={"seed": 7})
    again = prepare(config)
    assert again.teacher.card == tiny.teacher.card
    assert torch.equal(again.data.val.x, tiny.data.val.x)


def test_a_cache_that_cannot_be_written_is_refused_before_training(tiny, tmp_path, monkeypatch):
    """A folder where card.json belongs, and a cache where no file can be written (a
    read-only mount, a full disk: made here by a failing probe), stop the command before the
    teacher trains, and leave no folder behind."""
    data = tiny.data
    spec = tiny.config.teacher.model_copy(update={"cache_dir": tmp_path / "cache", "epochs": 1})
    entry = cache_path(spec, fingerprint(spec, data))
    (entry / "card.json").mkdir(parents=True)
    with pytest.raises(UserError, match=r"card.json is a folder where the teacher's file belongs"):
        get_teacher(spec, data, torch.device("cpu"))
    (entry / "card.json").rmdir()
    entry.rmdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("teachers.cache.tempfile.TemporaryFile", read_only)
    monkeypatch.setattr("teachers.cache.fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(UserError, match=r"cache_dir .*cache: cannot write .*: Read-only file"):
        get_teacher(spec, data, torch.device("cpu"))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["resnet18"]
    assert not any((tmp_path / "cache" / "resnet18").iterdir())  # the entry's folder is gone


def test_a_teacher_the_cache_cannot_take_is_kept_where_the_message_says(
    tiny, tmp_path, monkeypatch
):
    """The disk fills while the trained teacher is saved: the weights go to the temporary
    folder, the message names them, they load as a checkpoint, and no card commits the
    half-written entry."""
    from safetensors.torch import load_file

    data = tiny.data
    spec = tiny.config.teacher.model_copy(update={"cache_dir": tmp_path / "cache", "epochs": 1})
    from automl import files

    real_write = files._write_bytes

    def full_disk(path, data):
        if str(path).startswith(str(tmp_path / "cache")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, data)

    monkeypatch.setattr(files, "_write_bytes", full_disk)
    monkeypatch.setattr("teachers.cache.tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(UserError) as caught:
        get_teacher(spec, data, torch.device("cpu"))
    kept = tmp_path / "tmp" / f"automl-teacher-{fingerprint(spec, data)}.safetensors"
    assert f"its weights are kept in {kept}" in str(caught.value)
    assert "No space left on device" in str(caught.value)
    assert not (cache_path(spec, fingerprint(spec, data)) / "card.json").exists()
    torch.manual_seed(spec.seed)  # the teacher's initial weights, as training began
    model = create_teacher("resnet18", data.in_chans, data.num_classes)
    initial = accuracy(model.eval(), data.val, torch.device("cpu"))
    model.load_state_dict(load_file(str(kept)))
    # one epoch's weights: well above the initial ones' chance (0.1 for ten classes)
    assert accuracy(model.eval(), data.val, torch.device("cpu")) > max(0.2, initial + 0.1)


def test_a_damaged_rewind_point_is_set_aside_not_fatal(tiny, tmp_path, caplog):
    import shutil

    data = tiny.data
    spec = tiny.config.teacher.model_copy(update={"cache_dir": tmp_path})
    entry = cache_path(spec, tiny.teacher.card.fingerprint)
    shutil.copytree(tiny.teacher.cache_dir, entry)
    rewind = entry / "rewind.safetensors"
    rewind.write_bytes(rewind.read_bytes()[: rewind.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        teacher = get_teacher(spec, data, torch.device("cpu"))
    assert teacher.card == tiny.teacher.card  # the cached teacher, not a new one
    assert not teacher.has_rewind and teacher.rewind_state() is None
    assert (entry / "rewind.damaged").is_file() and not rewind.exists()
    assert "rewind.safetensors does not read" in caplog.text
