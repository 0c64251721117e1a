"""Train a teacher once, cache it as safetensors plus a JSON card, and cache its train logits.

The card carries a fingerprint of the data, its split, its augmentation and the
recipe. The cache keeps one entry per fingerprint (`cache_dir/<model>/<fingerprint>/`),
so switching between two configs retrains neither teacher, and a teacher is never
reused for data or a recipe it was not trained on. The logits of K fixed augmented
views per training image (`view_bank`) are cached beside the teacher they come from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from pydantic import BaseModel
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from automl.augment import ViewBank, apply_views, make_views
from automl.data import DataBundle
from automl.data.bundle import Images, Split
from automl.errors import UserError
from automl.files import WriteFailed, check_writable, save_tensors, write_file
from automl.paths import file_in_the_way
from automl.training import (
    Batch,
    FitSettings,
    LossFn,
    RandomViews,
    accuracy,
    cross_entropy_loss,
    fit,
    predict_logits,
    predict_split,
)
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
    rewind_epoch: int | None = None  # the epoch whose weights rewind.safetensors holds


REWIND_EPOCH = 1  # of 15 on Fashion-MNIST: 7% of training, early as in Frankle et al. 2020
REWIND_FILE = "rewind.safetensors"


@dataclass
class Teacher:
    """A trained teacher in eval mode, its card, and its logits on the training split."""

    model: nn.Module
    card: TeacherCard
    train_logits: torch.Tensor  # (N_train, num_classes), fp32, CPU
    cache_dir: Path

    def rewind_state(self) -> dict[str, torch.Tensor] | None:
        """The teacher's weights early in its training (after epoch `card.rewind_epoch`), for
        students rewound to them (lottery tickets with rewinding); None when the cache holds
        none (a teacher trained for fewer epochs, loaded from a checkpoint untrained, or
        cached before rewind points were kept)."""
        if not self.has_rewind:
            return None
        return load_file(str(self.cache_dir / REWIND_FILE))

    @property
    def has_rewind(self) -> bool:
        """Whether `rewind_state` has weights to give, known without reading them."""
        return self.card.rewind_epoch is not None and (self.cache_dir / REWIND_FILE).is_file()


def fingerprint(config: TeacherConfig, data: DataBundle) -> str:
    """Changes whenever the data, their split or augmentation, or anything else that shapes
    the trained weights changes."""
    recipe = config.model_dump(mode="json", exclude={"cache_dir"})
    if not config.small_input:  # teachers from before the option keep their fingerprints
        del recipe["small_input"]
    if config.checkpoint is not None:
        recipe["checkpoint_sha256"] = _file_sha256(config.checkpoint)
    payload = {
        "recipe": recipe,
        "data": data.fingerprint,
        "in_chans": data.in_chans,
        "num_classes": data.num_classes,
    }
    if data.augment.enabled:  # unaugmented teachers keep the fingerprints they had
        augment = data.augment.model_dump(mode="json")
        if not augment["erase"]:  # and so do those from before random erasing
            del augment["erase"]
        payload["augment"] = augment
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(config: TeacherConfig, fingerprint: str) -> Path:
    """The cache entry of one teacher: one folder per model and fingerprint."""
    return config.cache_dir / config.model.replace("/", "_") / fingerprint


def read_card(directory: Path) -> TeacherCard | None:
    path = directory / "card.json"
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
    retrain: bool = False,
) -> Teacher:
    """The cached teacher of this fingerprint, else a newly trained (or loaded) one."""
    expected = fingerprint(config, data)
    directory = cache_path(config, expected)
    card = read_card(directory)
    if card is not None and card.fingerprint == expected and not retrain:
        cached = _load_cached(config, data, directory)
        if cached is not None:
            model, logits = cached
            return Teacher(model, card, logits, directory)
    check_cache_entry(config.cache_dir, directory)  # found now, not after an hour of training
    return _build_and_cache(config, data, device, expected, directory)


ENTRY_FILES = ("model.safetensors", "logits.safetensors", REWIND_FILE, "card.json")


def check_cache_entry(cache_dir: Path, directory: Path) -> None:
    """Raise UserError unless a teacher can be saved in `directory`: no file stands where a
    folder must be, no folder where a file must be, and a file can be written there (a
    read-only mount, a full disk, a folder of another user's). Leaves no folder it made."""
    blocked = file_in_the_way(directory / "card.json")
    if blocked is not None:
        raise UserError(
            f"teacher.cache_dir {cache_dir}: {blocked} is a file, so the trained teacher could "
            "not be saved; choose another cache_dir"
        )
    for name in ENTRY_FILES:
        if (directory / name).is_dir():
            raise UserError(
                f"teacher.cache_dir {cache_dir}: {directory / name} is a folder where the "
                "teacher's file belongs; remove it or choose another cache_dir"
            )
    try:
        check_writable(directory)
    except WriteFailed as exc:
        raise UserError(f"teacher.cache_dir {cache_dir}: {exc}") from None


def view_bank(teacher: Teacher, data: DataBundle, count: int, device: torch.device) -> ViewBank:
    """`count` fixed augmented views of every training image and the teacher's logits for
    each, cached beside the teacher; one identity view (the plain train logits) when the data
    are not augmented."""
    seed = int(teacher.card.recipe.get("seed", 0))
    views = make_views(len(data.train), count, data.augment, seed)
    if not data.augment.enabled:
        return ViewBank(views, teacher.train_logits[None])
    path = teacher.cache_dir / f"views{count}.safetensors"
    shape = (count, len(data.train), data.num_classes)
    if path.is_file():
        try:
            logits = load_file(str(path))["logits"]
            if tuple(logits.shape) == shape:
                return ViewBank(views, logits)
        except Exception as exc:  # a cache is only a cache
            log.warning("view logits %s are unreadable (%s); computing them again", path, exc)
    log.info("teacher logits for %d augmented views of %d images", count, len(data.train))
    padding, fill = data.augment.crop_padding, data.black
    logits = torch.empty(shape)
    n = len(data.train)
    start_time = time.perf_counter()
    for k, view in enumerate(views):
        for start in range(0, n, 4096):
            part = torch.arange(start, min(start + 4096, n))
            x = apply_views(data.train.images(part), view[part], padding, fill)
            logits[k, part] = predict_logits(teacher.model, x, device)
        per_view = (time.perf_counter() - start_time) / (k + 1)
        log.info(
            "teacher logits: view %d/%d done, about %.0f s left",
            k + 1,
            count,
            per_view * (count - k - 1),
        )
    teacher.model.cpu()
    save_tensors(path, {"logits": logits}, metadata={"seed": str(seed)})
    return ViewBank(views, logits)


def _load_cached(config, data, directory):
    model = create_teacher(
        config.model, data.in_chans, data.num_classes, small_input=config.small_input
    )
    try:
        load_weights(model, load_file(str(directory / "model.safetensors")), "cached teacher")
        logits = load_file(str(directory / "logits.safetensors"))["train"]
    except Exception as exc:  # a cache is only a cache: an unreadable one is rebuilt
        log.warning("teacher cache %s is unreadable (%s); rebuilding it", directory, exc)
        return None
    _set_aside_if_damaged(directory / REWIND_FILE)
    if logits.shape != (len(data.train), data.num_classes):
        return None
    return model.eval(), logits


def _set_aside_if_damaged(path: Path) -> None:
    """Rename a rewind file that does not read (a truncated copy, a full disk) to
    `*.damaged`, with a warning naming it: the teacher is whole without it, and only a search
    that rewinds students needs it (and says so: `NO_REWIND`)."""
    if not path.exists():
        return
    try:
        with safe_open(str(path), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no iteration)
                f.get_slice(key)
    except Exception as exc:
        damaged = path.with_suffix(".damaged")
        path.replace(damaged)
        log.warning(
            "teacher cache: %s does not read (%s: %s); set aside as %s. The teacher is "
            "unharmed; `teacher --retrain` makes a new rewind point",
            path,
            type(exc).__name__,
            exc,
            damaged.name,
        )


class RunningLoss:
    """A loss function that also keeps the mean training loss since it was last `take`n."""

    def __init__(self, loss_fn: LossFn) -> None:
        self.loss_fn = loss_fn
        self.total, self.images = 0.0, 0

    def __call__(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.loss_fn(logits, batch)
        self.total += float(out["loss"].detach()) * len(batch.y)
        self.images += len(batch.y)
        return out

    def take(self) -> float:
        mean = self.total / max(self.images, 1)
        self.total, self.images = 0.0, 0
        return mean


PROGRESS_IMAGES = 1000


def epoch_progress(
    model: torch.nn.Module,
    name: str,
    epochs: int,
    val: Images,
    device: torch.device,
    loss: RunningLoss | None = None,
) -> Callable[[int], bool]:
    """`fit`'s `on_epoch` for the teacher: logs (INFO) each epoch's mean training loss (from
    `loss`), validation accuracy, seconds per epoch and the time left, so a long training is
    not silent. Never stops it.

    The accuracy is that of a random sample of `PROGRESS_IMAGES` validation images (all of
    them when there are fewer), the same each epoch: a progress figure to within about a
    point. Scoring all 6,000 of Fashion-MNIST took 5.5 s an epoch on 2 CPU cores, 100 s of an
    18-epoch teacher; the card's accuracy is always the whole split's.
    """
    start = time.perf_counter()
    if len(val) > PROGRESS_IMAGES:
        drawn = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))
        idx = drawn[:PROGRESS_IMAGES].sort().values
        sample: Images = Split(val.images(idx), val.y[idx])
    else:
        sample = val
    shown = f"val accuracy ({len(sample)} images)"

    def on_epoch(epoch: int) -> bool:
        val_accuracy = accuracy(model, sample, device)
        per_epoch = (time.perf_counter() - start) / epoch
        trained = f"loss {loss.take():.4f}, " if loss is not None else ""
        log.info(
            "teacher %s: epoch %d/%d, %s%s %.4f, %.0f s per epoch, about %.0f s left",
            name,
            epoch,
            epochs,
            trained,
            shown,
            val_accuracy,
            per_epoch,
            per_epoch * (epochs - epoch),
        )
        return False

    return on_epoch


def check_takes_inputs(model: torch.nn.Module, name: str, x: torch.Tensor) -> None:
    """One forward pass of the data's images before any training, so that a model that cannot
    take them fails in a second with a message, not in the first training step."""
    try:
        with torch.no_grad():
            model.eval()(x)
    except Exception as exc:  # whatever the model raises, it is the config's problem
        size = "x".join(str(d) for d in x.shape[1:])
        raise UserError(
            f"teacher.model: {name!r} cannot take the data's {size} images "
            f"({type(exc).__name__}: {exc}); choose a convolutional network such as resnet18, "
            "mobilenetv3_small_100 or efficientnet_b0"
        ) from None
    model.train()


def _build_and_cache(config, data, device, expected, directory) -> Teacher:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model = create_teacher(
        config.model, data.in_chans, data.num_classes, config.pretrained, config.small_input
    )
    check_takes_inputs(model, config.model, data.example_input(2))
    source = "pretrained" if config.pretrained else "scratch"
    rewind: dict[str, torch.Tensor] = {}
    if config.checkpoint is not None:
        where = f"teacher.checkpoint {config.checkpoint}"
        replaced = load_weights(model, read_state_dict(config.checkpoint), where, True)
        if replaced and config.epochs == 0:
            raise UserError(
                f"{where} has a classifier for another class count ({', '.join(replaced)}); "
                f"set teacher.epochs > 0 to fine-tune it to the data's {data.num_classes} classes"
            )
        source = f"checkpoint:{config.checkpoint}" + ("+new-classifier" if replaced else "")
    if config.epochs > 0:
        settings = FitSettings(config.epochs, config.lr, config.weight_decay, config.batch_size)
        augment = RandomViews(data.augment, data.black) if data.augment.enabled else None
        log.info("training teacher %s for %d epochs on %s", config.model, config.epochs, device)
        loss = RunningLoss(cross_entropy_loss)
        progress = epoch_progress(model, config.model, config.epochs, data.val, device, loss)

        def on_epoch(epoch: int) -> bool:
            if epoch == REWIND_EPOCH < config.epochs:
                state = model.state_dict()  # a copy: training goes on in place
                rewind.update(
                    {
                        k: v.detach().clone(memory_format=torch.contiguous_format).cpu()
                        for k, v in state.items()
                    }
                )
            return progress(epoch)

        fit(model, data.train, loss, settings, device, config.seed, on_epoch, augment)
        source += "+trained"
    model = model.cpu().eval()
    train_logits = predict_split(model, data.train, torch.device("cpu"))
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
        rewind_epoch=REWIND_EPOCH if rewind else None,
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if rewind:
            save_tensors(directory / REWIND_FILE, rewind, metadata={"epoch": str(REWIND_EPOCH)})
        save_tensors(directory / "model.safetensors", state, metadata={"fingerprint": expected})
        save_tensors(
            directory / "logits.safetensors",
            {"train": train_logits},
            metadata={"fingerprint": expected},
        )
        write_file(directory / "card.json", card.model_dump_json(indent=2) + "\n")  # commits
    except (OSError, WriteFailed) as exc:
        (directory / "card.json").unlink(missing_ok=True)  # no card: the entry is not cached
        raise UserError(_unsaved(directory, exc, state, expected)) from None
    return Teacher(model, card, train_logits, directory)


def _unsaved(
    directory: Path, exc: OSError | WriteFailed, state: dict[str, torch.Tensor], fp: str
) -> str:
    """The message for a trained teacher the cache could not take, after keeping its weights
    in the system's temporary folder when they fit there."""
    kept = Path(tempfile.gettempdir()) / f"automl-teacher-{fp}.safetensors"
    try:
        save_tensors(kept, state, metadata={"fingerprint": fp})
        where = f"its weights are kept in {kept} (teacher.checkpoint takes them, epochs: 0)"
    except WriteFailed:
        where = "its weights could not be kept anywhere"
    return (
        f"the trained teacher could not be saved in {directory} ({exc}); {where}. Free space "
        "or choose another teacher.cache_dir"
    )


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
