"""Build a student from the teacher and an Architecture: drop blocks, prune channels, fake-quant."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from automl.pruning import prune_channels
from automl.quantization import apply_fake_quant
from automl.stages import Stage, drop_blocks, stage_membership
from search_spaces import Architecture


@dataclass
class Student:
    """A physically smaller copy of the teacher; `bits_of` maps module names to weight bits."""

    model: nn.Module
    bits_of: dict[str, int]


def bits_by_module(model: nn.Module, stages: list[Stage], arch: Architecture) -> dict[str, int]:
    """Each module's weight bits: its stage's, or `stem_head_bits` outside every stage."""
    return {
        name: arch.stem_head_bits if stage is None else arch.stages[stage].bits
        for name, stage in stage_membership(model, stages).items()
    }


def drop_architecture_blocks(model: nn.Module, stages: list[Stage], arch: Architecture) -> None:
    """Remove, in place, the blocks that `arch` does not keep."""
    if len(arch.stages) != len(stages):
        raise ValueError(f"architecture has {len(arch.stages)} stages, the teacher {len(stages)}")
    drop_blocks(
        model,
        [b for st, a in zip(stages, arch.stages, strict=True) for b in st.blocks_to_drop(a.blocks)],
    )


def build_student(
    teacher: nn.Module,
    stages: list[Stage],
    arch: Architecture,
    calibration: tuple[torch.Tensor, torch.Tensor],
) -> Student:
    """A new student; the teacher is left untouched. The student inherits the teacher's
    weights for every block and channel it keeps, so distillation starts close to it."""
    model = copy.deepcopy(teacher).cpu().eval()
    for p in model.parameters():
        p.requires_grad_(True)
    drop_architecture_blocks(model, stages, arch)
    prune_channels(
        model, stages, [s.channel_keep for s in arch.stages], arch.criterion, calibration
    )
    bits_of = bits_by_module(model, stages, arch)
    apply_fake_quant(model, bits_of)
    return Student(model, bits_of)
