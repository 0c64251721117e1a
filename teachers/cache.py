"""Train a teacher once, cache it as safetensors plus a JSON card, and cache its train logits.

The card carries a fingerprint of the data and the recipe. A cached teacher is
reused only when the fingerprints match; otherwise it is retrained, never
silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from torch import nn

from automl.data import DataBundle
from automl.training import FitSettings, accuracy, cross_entropy_loss, fit, predict_logits
from teachers.load import create_teacher, load_weights, read_state_dict
from teachers.spec import TeacherConfig

log = logging.getLogger(__name__)


class TeacherCard(BaseModel):
    model: str
    fingerprint: str
    source: str  # "scratch+trained", "pretrained+trained", "checkpoint:<path>[+trained]"
    data: str
    data_fingerprint: str
    val_accuracy: float
    test_accuracy: float
    params: int
    size_bytes: int
    train_seconds: float
    recipe: dict[str, Any]
    timm_version: str
    torch_version: str


@dataclass
class Teacher:
    """A trained teacher in eval mode, its card, and its logits on the training split."""

    model: nn.Module
    card: TeacherCard
    train_logits: torch.Tensor  # (N_train, num_classes), fp32, CPU
    cache_dir: Path


def fingerprint(config: TeacherConfig, data: DataBundle, seed: int) -> str:
    """Changes whenever the data or anything that shapes the trained weights changes."""
    recipe = config.model_dump(mode="json", exclude={"cache_dir"})
    if config.checkpoint is not None:
        recipe["checkpoint_sha256"] = _file_sha256(config.checkpoint)
    payload = {
        "recipe": recipe,
        "data": data.fingerprint,
        "seed": seed,
        "in_chans": data.in_chans,
        "num_classes": data.num_classes,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(config: TeacherConfig) -> Path:
    return config.cache_dir / config.model.replace("/", "_")


def read_card(config: TeacherConfig) -> TeacherCard | None:
    path = cache_path(config) / "card.json"
    if not path.is_file():
        return None
    try:
        return TeacherCard.model_validate_json(path.read_text())
    except ValueError:
        return None


def get_teacher(
    config: TeacherConfig,
    data: DataBundle,
    device: torch.device,
    seed: int,
    retrain: bool = False,
) -> Teacher:
    """The cached teacher when its fingerprint matches, else a newly trained (or loaded) one."""
    expected = fingerprint(config, data, seed)
    directory = cache_path(config)
    card = read_card(config)
    if card is not None and card.fingerprint == expected and not retrain:
        cached = _load_cached(config, data, directory, expected)
        if cached is not None:
            model, logits = cached
            return Teacher(model, card, logits, directory)
    elif card is not None and card.fingerprint != expected:
        log.warning(
            "teacher cache %s was made for other data or another recipe (fingerprint %s, now %s); "
            "retraining",
            directory,
            card.fingerprint,
            expected,
        )
    return _build_and_cache(config, data, device, seed, expected, directory)


def _load_cached(config, data, directory, expected):
    model = create_teacher(config.model, data.in_chans, data.num_classes)
    try:
        load_weights(model, load_file(str(directory / "model.safetensors")), "cached teacher")
        logits = load_file(str(directory / "logits.safetensors"))["train"]
    except Exception as exc:  # a cache is only a cache: an unreadable one is rebuilt
        log.warning("teacher cache %s is unreadable (%s); rebuilding it", directory, exc)
        return None
    if logits.shape != (len(data.train), data.num_classes):
        return None
    return model.eval(), logits


def _build_and_cache(config, data, device, seed, expected, directory) -> Teacher:
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = create_teacher(config.model, data.in_chans, data.num_classes, config.pretrained)
    source = "pretrained" if config.pretrained else "scratch"
    if config.checkpoint is not None:
        load_weights(
            model, read_state_dict(config.checkpoint), f"teacher.checkpoint {config.checkpoint}"
        )
        source = f"checkpoint:{config.checkpoint}"
    if config.epochs > 0:
        settings = FitSettings(
            config.epochs,
            config.lr,
            config.weight_decay,
            config.batch_size,
            augment_shift=config.augment_shift,
        )
        log.info("training teacher %s for %d epochs on %s", config.model, config.epochs, device)
        fit(model, data.train, cross_entropy_loss, settings, device, seed)
        source += "+trained"
    model = model.cpu().eval()
    train_logits = predict_logits(model, data.train.x, torch.device("cpu"))
    params = sum(p.numel() for p in model.parameters())
    card = TeacherCard(
        model=config.model,
        fingerprint=expected,
        source=source,
        data=data.name,
        data_fingerprint=data.fingerprint,
        val_accuracy=accuracy(model, data.val, torch.device("cpu")),
        test_accuracy=accuracy(model, data.test, torch.device("cpu")),
        params=params,
        size_bytes=sum(
            t.numel() * t.element_size()
            for t in model.state_dict().values()
            if t.is_floating_point()
        ),
        train_seconds=round(time.perf_counter() - start, 2),
        recipe=config.model_dump(mode="json", exclude={"cache_dir"}),
        timm_version=timm.__version__,
        torch_version=torch.__version__,
    )
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"fingerprint": expected})
    save_file(
        {"train": train_logits.contiguous()},
        str(directory / "logits.safetensors"),
        metadata={"fingerprint": expected},
    )
    (directory / "card.json").write_text(card.model_dump_json(indent=2) + "\n")  # last: commits
    return Teacher(model, card, train_logits, directory)


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
