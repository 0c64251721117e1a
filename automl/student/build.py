"""Build a student from the teacher and an Architecture; measure what it costs to store.

The enabled techniques change a copy of the teacher one after another, in their `order`
(depth, channels, then what compresses weights), and are asked, never named, for the packed
size and the deployed form.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from automl.compress import (
    BuildContext,
    DeployForm,
    Student,
    TensorCost,
    combine_forms,
    techniques_in_order,
)
from automl.compress._base import StepHook, fold, packed_bytes
from automl.stages import Stage
from search_spaces import Architecture


def build_student(
    teacher: nn.Module,
    stages: list[Stage],
    arch: Architecture,
    calibration: tuple[torch.Tensor, torch.Tensor],
    rewind: dict[str, torch.Tensor] | None = None,
) -> Student:
    """A new student; the teacher is left untouched. The student inherits the teacher's
    weights for every block and channel it keeps, so distillation starts close to it, unless
    a technique gives it others (`init`). `calibration` is a labelled batch of training
    images and `rewind` the teacher's early weights, when known (see `BuildContext`)."""
    arch.check_fits(stages)
    model = copy.deepcopy(teacher).cpu().eval()
    for p in model.parameters():
        p.requires_grad_(True)
    ctx = BuildContext(calibration, teacher, rewind)
    student = Student(model, stages, context=ctx)
    for technique in techniques_in_order(arch.techniques):
        technique.apply(student, arch.params(technique.name), ctx)
    return student


def restore_structure(model: nn.Module, stages: list[Stage], arch: Architecture) -> None:
    """Give a fresh teacher-shaped model what a saved student's state dict cannot express."""
    arch.check_fits(stages)
    for technique in techniques_in_order(arch.techniques):
        technique.restore(model, stages, arch.params(technique.name))


def finish_student(student: Student, arch: Architecture) -> None:
    """Turn a student into its deployed form in place: each technique's `finish` (what it
    left until after training: masked channels removed), then every parametrization folded
    into plain weights. A trained student's packed size is measured on this form."""
    for technique in techniques_in_order(arch.techniques):
        technique.finish(student, arch.params(technique.name))
    fold(student.model)
    student.model.eval()


def deployed_copy(student: Student, arch: Architecture) -> nn.Module:
    """The student's deployed form as it stands, on a copy: before training, it has the final
    shapes (what latency and MACs are measured on) with the weights of the moment."""
    twin = Student(copy.deepcopy(student.model).eval(), student.stages, context=student.context)
    finish_student(twin, arch)
    return twin.model


def tensor_costs(model: nn.Module) -> dict[str, TensorCost]:
    """Every parameter and float buffer as a dense fp32 tensor, keyed 'module.tensor'. A
    parametrized weight appears once, under its own name (`conv.weight`)."""
    costs: dict[str, TensorCost] = {}
    for name, module in model.named_modules():
        if ".parametrizations" in f".{name}":
            continue  # a parametrization's `original` is counted through its owner
        prefix = f"{name}." if name else ""
        for tname, tensor in _own_tensors(module):
            costs[prefix + tname] = TensorCost(values=tensor.numel())
    return costs


def packed_size_bytes(student: Student, arch: Architecture) -> int:
    """Bytes to store the student as its techniques store it (fp32 where none says otherwise)."""
    costs = tensor_costs(student.model)
    for technique in techniques_in_order(arch.techniques):
        technique.account(student, arch.params(technique.name), costs)
    return packed_bytes(costs)


def training_hooks(student: Student, arch: Architecture) -> StepHook | None:
    """One step hook for `fit` that calls every technique's `during_training` hooks in the
    techniques' order; None when no technique moves while the student trains."""
    hooks = [
        hook
        for t in techniques_in_order(arch.techniques)
        for hook in t.during_training(student, arch.params(t.name))
    ]
    if not hooks:
        return None

    def on_step(step: int, total_steps: int) -> None:
        for hook in hooks:
            hook(step, total_steps)

    return on_step


def deploy_form(arch: Architecture | None) -> DeployForm:
    """What the deployed form must keep; `None` (the teacher) is plain fp32."""
    if arch is None:
        return DeployForm(weight_bits=32)
    return combine_forms(
        t.deploy_form(arch.params(t.name)) for t in techniques_in_order(arch.techniques)
    )


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    found: list[tuple[str, torch.Tensor]] = []
    if parametrize.is_parametrized(module):
        for pname in module.parametrizations:  # type: ignore[union-attr]
            found.append((pname, getattr(module, pname)))
    for pname, p in module.named_parameters(recurse=False):
        found.append((pname, p))
    for bname, b in module.named_buffers(recurse=False):
        if b.is_floating_point():  # skips BatchNorm's integer num_batches_tracked
            found.append((bname, b))
    return found
