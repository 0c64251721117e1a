"""Save a student as safetensors plus its architecture, and load it back into a timm model.

A student is the teacher's timm model changed by its techniques. Loading rebuilds it: the
timm model by name, what a state dict cannot express redone by each technique (`restore`:
dropped blocks), then every layer resized to the shapes stored in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from automl.files import write_file, write_json
from automl.stages import Stage, find_stages
from automl.student.build import restore_structure
from search_spaces import Architecture
from teachers.load import create_teacher


def student_bytes(model: nn.Module, arch: Architecture) -> bytes:
    """The student as a safetensors file in memory, its architecture in the metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(state, metadata={"architecture": arch.model_dump_json()})


def write_student(path: Path, weights: bytes, arch: Architecture, meta: dict[str, Any]) -> None:
    """Write `weights` (from student_bytes) to `path` and its architecture and `meta` to `path`
    with .json beside it."""
    write_file(path, weights)
    write_json(path.with_suffix(".json"), {"architecture": arch.model_dump(mode="json"), **meta})


def save_student(path: Path, model: nn.Module, arch: Architecture, meta: dict[str, Any]) -> None:
    """Write `path` (.safetensors, the deployed fp32 weights) and `path` with .json beside it."""
    write_student(path, student_bytes(model, arch), arch, meta)


def load_student(
    path: Path,
    teacher_name: str,
    in_chans: int,
    num_classes: int,
    image_size: tuple[int, int],
    small_input: bool = False,
) -> tuple[nn.Module, Architecture]:
    """Rebuild the student stored at `path` (written by save_student) from a teacher made by
    `create_teacher(teacher_name, in_chans, num_classes, small_input=small_input)`; eval
    mode, CPU."""
    state = load_file(str(path))
    arch = Architecture.model_validate_json(_metadata(path)["architecture"])
    model, _ = skeleton(arch, teacher_name, in_chans, num_classes, image_size, small_input)
    fill_state(model, state)
    return model.eval(), arch


def skeleton(
    arch: Architecture,
    teacher_name: str,
    in_chans: int,
    num_classes: int,
    image_size: tuple[int, int],
    small_input: bool = False,
) -> tuple[nn.Module, list[Stage]]:
    """A fresh teacher-shaped model with what a state dict of `arch` cannot express redone
    (dropped blocks), and the teacher's stages, whose module paths still name its layers."""
    model = create_teacher(teacher_name, in_chans, num_classes, small_input=small_input)
    stages = find_stages(model, torch.zeros(1, in_chans, *image_size))
    restore_structure(model, stages, arch)
    return model, stages


def fill_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize `model` (from `skeleton`) to `state` and load it. Integer buffers that `state`
    leaves out (batch norm's step counter, which the packed file does not keep) stay as
    they are."""
    resize_to_state(model, state)
    own = model.state_dict()
    missing = {k: v for k, v in own.items() if k not in state and not v.is_floating_point()}
    model.load_state_dict({**state, **missing})


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata() or {}


def resize_to_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give every parameter and buffer of `model` the shape it has in `state`, and update the
    layer attributes (channels, features, groups) that forward passes read."""
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        depthwise = (
            isinstance(module, nn.Conv2d)
            and module.groups > 1
            and (module.groups == module.in_channels == module.out_channels)
        )
        for pname, tensor in list(module.named_parameters(recurse=False)):
            new = state.get(prefix + pname)
            if new is not None and new.shape != tensor.shape:
                setattr(module, pname, nn.Parameter(torch.empty_like(new)))
        for bname, tensor in list(module.named_buffers(recurse=False)):
            new = state.get(prefix + bname)
            if new is not None and new.shape != tensor.shape:
                module.register_buffer(bname, torch.empty_like(new))
        _sync_attributes(module, depthwise)


def _sync_attributes(module: nn.Module, depthwise: bool) -> None:
    if isinstance(module, nn.Conv2d):
        out, in_per_group = module.weight.shape[:2]
        if depthwise:
            module.groups = out
        module.out_channels = out
        module.in_channels = in_per_group * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = (
            module.weight.shape[0] if module.weight is not None else (module.running_mean.shape[0])
        )
    elif (
        isinstance(module, nn.LayerNorm | nn.GroupNorm)
        and getattr(module, "weight", None) is not None
    ):
        if isinstance(module, nn.LayerNorm):
            module.normalized_shape = tuple(module.weight.shape)
        else:
            module.num_channels = module.weight.shape[0]
