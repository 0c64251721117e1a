"""One trial: an Architecture in, a TrialResult out. Every controller calls `run_trial`, and
records what became of each trial as a `TrialRecord`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel
from torch import nn

from automl.augment import ViewBank
from automl.compress import Student, onnx_format
from automl.config import LatencyConfig, TrainingConfig
from automl.constraints import Limits, Rejected
from automl.data import DataBundle
from automl.deploy.onnx import onnx_latency_ms
from automl.early_stop import EpochReport
from automl.feature_kd import (
    FeatureBanks,
    FeatureHints,
    OnlineTeacher,
    feature_bank,
    with_feature_loss,
)
from automl.measure import latency_ms, macs_and_params
from automl.stages import Stage
from automl.student.build import (
    build_student,
    deploy_form,
    deployed_copy,
    finish_student,
    packed_size_bytes,
    training_hooks,
)
from automl.training import (
    Augmenter,
    BankViews,
    FitSettings,
    LossFn,
    NonFiniteLoss,
    RandomViews,
    accuracy,
    cross_entropy_loss,
    distillation_loss,
    fit,
    online_distillation,
    seed_everything,
)
from search_spaces import Architecture

# Called after each epoch; returns True to stop the trial early (multi-fidelity schedulers
# such as ASHA decide through it, see automl.early_stop).
Reporter = Callable[[EpochReport], bool]


class TrialStopped(Exception):
    """A reporter stopped the trial early; its partial result is not a candidate."""

    def __init__(self, epoch: int, val_accuracy: float) -> None:
        super().__init__(f"stopped early after epoch {epoch} (val_accuracy {val_accuracy:.4f})")
        self.epoch = epoch
        self.val_accuracy = val_accuracy


class Scores(BaseModel):
    """What a trial measures of one student (`automl.objectives` names the ones optimised);
    test_accuracy is recorded but never optimised."""

    val_accuracy: float
    test_accuracy: float
    latency_ms: float
    size_bytes: int
    params: int
    macs: int
    train_seconds: float


class TrialResult(Scores):
    """The scores of one trial and the epochs it trained (fewer when stopped early)."""

    epochs: int


TrialState = Literal["COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING"]


@dataclass
class TrialRecord:
    """One trial as every controller reports it. PRUNED: stopped early by a scheduler."""

    number: int
    state: TrialState
    architecture: Architecture | None = None
    result: TrialResult | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # controller columns, e.g. node_id
    rejected: str = ""  # the search's limits it breaks; such a trial never joins the front

    @property
    def trained(self) -> bool:
        """A completed trial whose student trained (not one rejected before training); the
        budget counts these."""
        return self.state == "COMPLETE" and (self.result is None or self.result.epochs > 0)


@dataclass
class TrialContext:
    """What every trial shares: built once per search and reused (teacher logits included).

    `bank` holds the teacher's logits of fixed views of every training image; None means
    online distillation (a teacher forward per batch). `subset` picks the training images
    of a proxy search (None: all).
    """

    teacher: nn.Module
    stages: list[Stage]
    data: DataBundle
    bank: ViewBank | None
    training: TrainingConfig
    latency: LatencyConfig
    device: torch.device
    subset: torch.Tensor | None = None
    rewind: dict[str, torch.Tensor] | None = None  # the teacher's early weights (`init`)
    limits: Limits = field(default_factory=Limits)  # checked before training where they can be
    # the teacher's stage outputs, made on first need and shared with the contexts that
    # `dataclasses.replace` derives (finalize's, one per retrained model)
    feature_banks: FeatureBanks = field(default_factory=FeatureBanks, repr=False, compare=False)

    def augmenter(self) -> Augmenter | None:
        """How a student's batches are augmented: views of the bank, fresh ones when online,
        none unless both `data.augment` and `training.augment` ask for it."""
        augment = self.data.augment
        if not (augment.enabled and self.training.augment):
            return None
        if self.bank is not None:
            return BankViews(self.bank, augment.crop_padding, self.data.black)
        return RandomViews(augment, self.data.black)

    def build(self, arch: Architecture) -> Student:
        """The student of `arch`, cut from the teacher (calibrated on 64 training images)."""
        calibration = (self.data.example_input(64), self.data.train.y[:64])
        return build_student(self.teacher, self.stages, arch, calibration, self.rewind)

    def fit_settings(self, epochs: int | None = None) -> FitSettings:
        """The search's training recipe, for `epochs` (default: training.epochs)."""
        t = self.training
        return FitSettings(epochs or t.epochs, t.lr, t.weight_decay, t.batch_size, t.amp)

    def distillation(self, temperature: float, alpha: float) -> LossFn:
        """The KD loss of a trial: cached logits moved to the device, or a teacher there (a
        copy, so the shared teacher that students are built from stays on the CPU)."""
        if self.bank is not None:
            return distillation_loss(self.bank.logits.to(self.device), temperature, alpha)
        return online_distillation(self._device_teacher(), temperature, alpha)

    def _device_teacher(self) -> nn.Module:
        teacher = self.teacher if self.device.type == "cpu" else copy.deepcopy(self.teacher)
        return teacher.to(self.device).eval()

    def student_loss(self, student: Student, arch: Architecture) -> StudentLoss:
        """The KD loss of a trial, with FitNets' stage-output term when
        `arch.kd_feature_weight` > 0: the teacher's outputs cached for the training pool when
        the student sees un-augmented images, else from a teacher forward per batch (which
        also gives the logits when those are online)."""
        base = self.distillation(arch.kd_temperature, arch.kd_alpha)
        if arch.kd_feature_weight == 0:
            return StudentLoss(base)
        example = self.data.example_input(2)
        if self.augmenter() is None:
            bank = self.feature_banks.get(
                self.teacher,
                self.stages,
                self.data.train,
                self.subset,
                lambda: feature_bank(
                    self._device_teacher(), self.stages, self.data.train, self.subset, self.device
                ),
            )
            targets, shapes = bank.targets(self.device), bank.shapes
            close: Callable[[], None] = lambda: None  # noqa: E731
        else:
            online = OnlineTeacher(self._device_teacher(), self.stages)
            shapes = online.stage_shapes(example.to(self.device))
            if self.bank is None:
                base = online_distillation(online, arch.kd_temperature, arch.kd_alpha)
            targets, close = online.targets, online.remove
        hints = FeatureHints(student.model, student.stages, shapes, example)
        loss = with_feature_loss(base, hints, targets, arch.kd_feature_weight)

        def closing() -> None:
            hints.remove()
            close()

        return StudentLoss(loss, hints.regressors, closing)


@dataclass
class StudentLoss:
    """A student's loss; `extra`: modules trained with the student and dropped afterwards
    (FitNets' regressors); `close` removes the hooks the loss set."""

    loss: LossFn
    extra: nn.Module | None = None
    close: Callable[[], None] = field(default=lambda: None)


CALIBRATION = 64  # training images that calibrate the int8 form timed during a search


def search_latency_ms(model: nn.Module, int8: bool, data: DataBundle, cfg: LatencyConfig) -> float:
    """The latency a search optimises, of a deployed (folded) model: on `cfg.runtime` (ONNX
    Runtime as `pick` ships it, int8 when `int8`, or PyTorch eager), on `cfg.device`, median
    of `cfg.repeats` after `cfg.warmup`, `cfg.threads` threads. Students and the teacher are
    timed by this one function."""
    example = data.example_input(cfg.batch_size)
    if cfg.runtime == "onnxruntime":
        calibration = data.example_input(CALIBRATION).numpy()
        return onnx_latency_ms(
            model.cpu(),
            int8,
            example,
            calibration,
            repeats=cfg.repeats,
            warmup=cfg.warmup,
            threads=cfg.threads,
        )
    return latency_ms(
        model,
        example,
        torch.device(cfg.device),
        repeats=cfg.repeats,
        warmup=cfg.warmup,
        threads=cfg.threads,
    )


def run_trial(
    arch: Architecture,
    ctx: TrialContext,
    seed: int,
    reporter: Reporter | None = None,
    kd: bool = True,
) -> tuple[TrialResult, nn.Module]:
    """Build, distil and score one student; returns its result and its deployed form
    (fake-quant folded into the weights, eval mode, CPU). With `kd=False` the student learns
    from the labels alone (cross-entropy), the baseline that shows what distillation adds.

    Latency, MACs and parameters are measured on the deployed form before training (they do
    not depend on it), and so is the packed size when no technique moves during training;
    a student that breaks `ctx.limits` there raises Rejected without training.

    Raises NonFiniteLoss on a NaN loss and TrialStopped when the reporter stops it.
    """
    seed_everything(seed)
    start = time.perf_counter()
    data = ctx.data
    student = ctx.build(arch)
    model = student.model
    moving = training_hooks(student, arch)
    deployed = deployed_copy(student, arch)
    int8 = onnx_format(deploy_form(arch)) == "int8"
    lat = search_latency_ms(deployed, int8, data, ctx.latency)
    macs, params = macs_and_params(deployed.cpu(), data.example_input(1))
    del deployed
    if ctx.limits.any:
        untrained = TrialResult(
            val_accuracy=0.0,
            test_accuracy=0.0,
            latency_ms=lat,
            size_bytes=packed_size_bytes(student, arch),  # final unless `moving`
            params=params,
            macs=macs,
            train_seconds=0.0,
            epochs=0,
        )
        reason = ctx.limits.broken(untrained, trained=False, sized=moving is None)
        if reason:
            raise Rejected(reason, untrained)
    loss = ctx.student_loss(student, arch) if kd else StudentLoss(cross_entropy_loss)
    settings = ctx.fit_settings()

    def on_epoch(epoch: int) -> bool:
        if reporter is None:
            return False
        val = accuracy(model, data.val, ctx.device)
        size = packed_size_bytes(student, arch)  # moves with a technique that moves
        if reporter(EpochReport(epoch, val, lat, size)):
            raise TrialStopped(epoch, val)
        return False

    try:
        epochs = fit(
            model,
            data.train,
            loss.loss,
            settings,
            ctx.device,
            seed,
            on_epoch,
            augment=ctx.augmenter(),
            indices=ctx.subset,
            on_step=moving,
            extra=loss.extra,
        )
    finally:
        loss.close()
    train_seconds = time.perf_counter() - start
    model.cpu()
    finish_student(student, arch)
    model = student.model
    size = packed_size_bytes(student, arch)
    val_acc = accuracy(model, data.val, ctx.device)
    if not math.isfinite(val_acc):
        raise NonFiniteLoss("validation accuracy is not finite")
    model = model.cpu()
    result = TrialResult(
        val_accuracy=val_acc,
        test_accuracy=accuracy(model, data.test, torch.device("cpu")),
        latency_ms=lat,
        size_bytes=size,
        params=params,
        macs=macs,
        train_seconds=round(train_seconds, 3),
        epochs=epochs,
    )
    return result, model
