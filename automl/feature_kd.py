"""Feature distillation (FitNets, Romero et al. 2015): beside the logits, the student's stage
outputs learn the teacher's.

Each stage output of the student passes through a 1x1 convolution to the teacher's width
(a regressor, trained with the student and dropped after training: the deployed student is
unchanged), and the loss adds the mean squared error to the teacher's output of the same
stage, averaged over the stages and weighted by the architecture's `kd_feature_weight` (beta):

    loss = alpha * T² * KL + (1 - alpha) * CE + beta * mean_s MSE(r_s(S_s), T_s)

Pruning and dropping blocks keep each stage's resolution, so student and teacher outputs
differ in channels only. The teacher's stage outputs are cached once per training pool
(`FeatureBank`, float16 on the CPU) when the student trains on un-augmented images, as the
logits are; on augmented views the teacher runs on each batch (`OnlineTeacher`), once for
its logits and its stage outputs together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from automl.data.bundle import Images
from automl.stages import Stage
from automl.training import Batch, LossFn

Targets = Callable[[Batch], list[torch.Tensor]]  # the teacher's stage outputs for a batch


class StageOutputs:
    """Forward hooks that keep the latest output of each stage module of `model`."""

    def __init__(self, model: nn.Module, stages: Sequence[Stage]) -> None:
        self.outputs: list[torch.Tensor] = []
        self._handles = [
            model.get_submodule(stage.name).register_forward_hook(self._keep(i))
            for i, stage in enumerate(stages)
        ]
        self.outputs = [torch.empty(0)] * len(stages)

    def _keep(self, i: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
            self.outputs[i] = output

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@dataclass(frozen=True)
class FeatureBank:
    """The teacher's output of every stage for a pool of training images: `features[s]` is
    (len(pool), C_s, H_s, W_s) float16; `row[i]` is training image i's row (-1: not in the
    pool)."""

    features: list[torch.Tensor]
    row: torch.Tensor

    @property
    def shapes(self) -> list[torch.Size]:
        return [f.shape[1:] for f in self.features]

    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.features)

    def targets(self, device: torch.device) -> Targets:
        """The cached outputs of a batch's images, on `device` (copied there once)."""
        features = [f.to(device) for f in self.features]
        row = self.row.to(device)

        def of(batch: Batch) -> list[torch.Tensor]:
            rows = row[batch.idx]
            return [f[rows] for f in features]

        return of


@torch.no_grad()  # not inference_mode: the outputs are targets of a loss that is backpropagated
def feature_bank(
    teacher: nn.Module,
    stages: Sequence[Stage],
    train: Images,
    pool: torch.Tensor | None,
    device: torch.device,
    batch_size: int = 256,
) -> FeatureBank:
    """The teacher's stage outputs for the training images `pool` (indices; None: all), in
    eval mode on `device`."""
    order = torch.arange(len(train)) if pool is None else pool.cpu()
    teacher.to(device).eval()
    hooks = StageOutputs(teacher, stages)
    parts: list[list[torch.Tensor]] = [[] for _ in stages]
    try:
        for _, x in train.batches(order, batch_size):
            teacher(x.to(device))
            for part, out in zip(parts, hooks.outputs, strict=True):
                part.append(out.half().cpu())
    finally:
        hooks.remove()
    row = torch.full((len(train),), -1, dtype=torch.long)
    row[order] = torch.arange(len(order))
    return FeatureBank([torch.cat(p) for p in parts], row)


class FeatureBanks:
    """Feature banks made on first need and shared, one per teacher, stages, training images
    and pool: finalize retrains every front model on the same full pool, and made afresh a
    bank costs a teacher pass over every image (about 50 s for Fashion-MNIST's 54,000 on 2
    cores). Pickling (a context sent to Ray workers) drops the banks, which would be
    gigabytes; each process then makes its own."""

    def __init__(self) -> None:
        # keyed by the objects' ids; the entry holds the objects, so no id is reused meanwhile
        self._banks: dict[tuple[int, int, int, bytes | None], tuple[object, FeatureBank]] = {}

    def get(
        self,
        teacher: nn.Module,
        stages: Sequence[Stage],
        train: Images,
        pool: torch.Tensor | None,
        make: Callable[[], FeatureBank],
    ) -> FeatureBank:
        """The bank of `teacher`'s `stages` on `train`'s images `pool` (indices; None: all),
        from `make` the first time."""
        key = (
            id(teacher),
            id(stages),
            id(train),
            None if pool is None else pool.cpu().numpy().tobytes(),
        )
        if key not in self._banks:
            self._banks[key] = ((teacher, stages, train), make())
        return self._banks[key][1]

    def __len__(self) -> int:
        return len(self._banks)

    def __getstate__(self) -> dict[str, object]:
        return {"_banks": {}}


class OnlineTeacher(nn.Module):
    """The teacher run once per batch for both targets: called on a batch's inputs it returns
    the logits (for `online_distillation`) and keeps the stage outputs, which `targets` reads
    without a second forward pass."""

    def __init__(self, teacher: nn.Module, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.teacher = teacher.eval()
        self._hooks = StageOutputs(teacher, stages)
        self._last: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None = None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._last is None or self._last[0] is not x:
            logits = self.teacher(x)
            self._last = (x, logits, list(self._hooks.outputs))
        return self._last[1]

    def stage_shapes(self, example: torch.Tensor) -> list[torch.Size]:
        """(C, H, W) of each stage's output, from a forward pass on `example`."""
        self(example)
        assert self._last is not None
        return [out.shape[1:] for out in self._last[2]]

    def targets(self, batch: Batch) -> list[torch.Tensor]:
        self(batch.x)
        assert self._last is not None
        return self._last[2]

    def remove(self) -> None:
        self._hooks.remove()
        self._last = None


class FeatureHints:
    """The student's side for one training run: hooks on its stage outputs and one 1x1
    regressor per stage to the teacher's width (`regressors`, to be trained with it)."""

    def __init__(
        self,
        student: nn.Module,
        stages: Sequence[Stage],
        teacher_shapes: Sequence[torch.Size],
        example: torch.Tensor,
    ) -> None:
        self._hooks = StageOutputs(student, stages)
        was_training = student.training
        with torch.no_grad():
            student.eval()(example)
        student.train(was_training)
        self.regressors = nn.ModuleList()
        for stage, out, want in zip(stages, self._hooks.outputs, teacher_shapes, strict=True):
            if out.shape[2:] != want[1:]:
                raise ValueError(
                    f"stage {stage.name}: the student's output is {tuple(out.shape[2:])} pixels, "
                    f"the teacher's {tuple(want[1:])}; feature distillation needs the same"
                )
            self.regressors.append(nn.Conv2d(out.shape[1], want[0], 1, bias=False))

    def loss(self, teacher: list[torch.Tensor]) -> torch.Tensor:
        """The mean over stages of the MSE of the regressed student outputs of the latest
        forward pass to the teacher's `teacher` outputs."""
        terms = [
            F.mse_loss(regress(out).float(), want.float())
            for regress, out, want in zip(
                self.regressors, self._hooks.outputs, teacher, strict=True
            )
        ]
        return torch.stack(terms).mean()

    def remove(self) -> None:
        self._hooks.remove()


def with_feature_loss(base: LossFn, hints: FeatureHints, targets: Targets, weight: float) -> LossFn:
    """`base` plus `weight` times the hints' loss against `targets`; the output dict gains
    'feature_loss'."""

    def loss(logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        out = base(logits, batch)
        feature = hints.loss(targets(batch))
        out["feature_loss"] = feature
        out["loss"] = out["loss"] + weight * feature
        return out

    return loss
