"""What every command sets up from a config: the device, the data, the teacher, its stages and
the trial context, plus the library versions that run documents and model cards record."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

import automl
from automl.augment import AugmentConfig
from automl.config import ExperimentConfig
from automl.data import DataBundle, load_data
from automl.data.bundle import stratified_subset
from automl.errors import UserError
from automl.stages import Stage, find_stages
from automl.trial import TrialContext
from teachers.cache import Teacher, get_teacher, view_bank

# Distributions whose versions shape the numbers a run reports.
VERSIONED = ("torch", "timm", "optuna", "torch-pruning", "onnxruntime", "ray")


@dataclass
class Experiment:
    """A config made concrete: its data, its trained teacher, the device and the stages."""

    config: ExperimentConfig
    data: DataBundle
    teacher: Teacher
    device: torch.device

    @cached_property
    def stages(self) -> list[Stage]:
        """The teacher's stages (found with one forward pass, once)."""
        return find_stages(self.teacher.model, self.data.example_input())

    @property
    def kd_targets(self) -> str:
        """`cached` or `online`: the config's choice, `auto` resolved by the device."""
        chosen = self.config.training.kd_targets
        if chosen == "auto":
            return "online" if self.device.type == "cuda" else "cached"
        return chosen

    def trial_context(self) -> TrialContext:
        """What every trial of this experiment shares (teacher logits included)."""
        c = self.config
        bank = None
        if self.kd_targets == "cached":
            seen = self.data if c.training.augment else replace(self.data, augment=AugmentConfig())
            bank = view_bank(self.teacher, seen, c.training.kd_views, self.device)
        subset = None
        if c.training.train_subset is not None:
            labels = self.data.train.y.numpy()
            check_train_subset(c.training.train_subset, labels)
            picked = stratified_subset(labels, c.training.train_subset, c.data.split_seed)
            subset = torch.from_numpy(picked)
        return TrialContext(
            self.teacher.model,
            self.stages,
            self.data,
            bank,
            c.training,
            c.latency,
            self.device,
            subset,
            self.teacher.rewind_state(),
        )


def check_train_subset(size: int, labels: np.ndarray) -> None:
    """A proxy subset must hold every class and leave every class out somewhere (a stratified
    split of the training labels); a UserError gives the sizes allowed."""
    classes = len(np.unique(labels))
    if not classes <= size <= len(labels) - classes:
        raise UserError(
            f"training.train_subset: {size} is no proxy subset of the {len(labels)} training "
            f"images in {classes} classes; use {classes} to {len(labels) - classes}, or null to "
            "train every student on all of them"
        )


def check_sizes(config: ExperimentConfig, labels: np.ndarray) -> None:
    """Before any training: the proxy subset fits the training split, and neither batch is
    larger than the images it is drawn from (one optimizer step per epoch would train
    nothing). A UserError names the field and what is allowed."""
    seen = len(labels)
    if config.training.train_subset is not None:
        check_train_subset(config.training.train_subset, labels)
        seen = config.training.train_subset
    for field, batch, images in (
        ("training.batch_size", config.training.batch_size, seen),
        ("teacher.batch_size", config.teacher.batch_size, len(labels)),
    ):
        if batch > images:
            raise UserError(
                f"{field}: {batch} is more than the {images} images it is drawn from, so an "
                f"epoch would be a single step; use 2 to {images}"
            )


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device: cuda was asked for but no CUDA device is available; use auto or cpu"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(
    config: ExperimentConfig,
    retrain: bool = False,
    check: Callable[[DataBundle], None] | None = None,
) -> Experiment:
    """Data and teacher for a config (the teacher trained on first use, else from its cache).
    `check` sees the data before the teacher is trained or loaded, and may refuse them (a
    UserError)."""
    torch.set_num_threads(config.training.threads or os.cpu_count() or 1)
    device = resolve_device(config.device)
    if config.latency.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "latency.device: cuda was asked for but no CUDA device is available; measure on "
            "the cpu, or search where the deployment GPU is"
        )
    data = load_data(config.data)
    check_sizes(config, data.train.y.numpy())  # before the teacher's training, not after
    if check is not None:
        check(data)
    teacher = get_teacher(config.teacher, data, device, retrain=retrain)
    return Experiment(config, data, teacher, device)


def library_versions() -> dict[str, str]:
    found = {"automl": automl.__version__, "python": platform.python_version()}
    for distribution in VERSIONED:
        with contextlib.suppress(PackageNotFoundError):  # optional extras (ray)
            found[distribution.replace("-", "_")] = version(distribution)
    return found
