"""Depth: each stage keeps some of its blocks. A block can go when its output has the shape of
its input (see `automl.stages`); a stage's first block always stays.

`block_choice` says which blocks go:

- `last` (the default): the last ones of the stage;
- `norm`: those whose residual branch changes their input least, ``||block(x) - x|| / ||x||``
  on the calibration batch (Veit et al. 2016, "Residual networks behave like ensembles of
  relatively shallow networks": blocks whose branch adds little can be removed);
- `sensitivity`: those whose removal alone changes the teacher's predictions least on the
  calibration batch (KL divergence of its softmax outputs without the block from those with
  it), the per-block version of `python cli.py sensitivity` on 64 images.

resnet18 has one droppable block per stage, so there the choice changes nothing; deeper
teachers (resnet34 and up, mobilenets, efficientnets) have several.

A saved student's state dict names a stage's blocks by their position in the shortened
stage, and `restore` rebuilds the skeleton by dropping the last blocks. That is the same
skeleton whichever blocks were chosen when a stage's droppable blocks share one structure
(resnets); where they differ (mobilenetv3 mixes kernel sizes and squeeze-excitation within a
stage), `norm` and `sensitivity` choose among the sets of blocks whose removal leaves the
structures that dropping the last ones leaves.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from automl.compress import register_technique
from automl.compress._base import (
    BuildContext,
    DeployForm,
    StageField,
    Student,
    Technique,
    TechniqueParams,
)
from automl.stages import Block, Stage, drop_blocks


class DepthParams(TechniqueParams):
    # Stages differ in how many blocks they hold, so one value cannot serve them all.
    blocks: Annotated[list[Annotated[int, Field(ge=1)]], StageField(shareable=False)]
    block_choice: Literal["last", "norm", "sensitivity"] = "last"


@register_technique
class Depth(Technique):
    name = "depth"
    order = 10
    Params = DepthParams
    space: ClassVar[dict[str, Any]] = {
        "blocks": {"type": "int"},  # per stage, from its fewest to all of its blocks
        "block_choice": "last",
    }

    def stage_range(self, field_name: str, stage: Stage) -> tuple[int, int]:
        return stage.min_blocks, stage.num_blocks

    def apply(self, student: Student, params: DepthParams, ctx: BuildContext) -> None:
        _check_stage_count(student.stages, params)
        dropped = blocks_to_drop(
            student.model, student.stages, params.blocks, params.block_choice, ctx.calibration[0]
        )
        drop_blocks(student.model, dropped)
        student.replays.append(lambda model: drop_blocks(model, dropped))

    def restore(self, model: nn.Module, stages: list[Stage], params: DepthParams) -> None:
        _check_stage_count(stages, params)
        drop_blocks(model, _last_blocks(stages, params.blocks))

    def deploy_form(self, params: DepthParams) -> DeployForm:
        return DeployForm()

    def describe(self, params: DepthParams) -> dict[str, str]:
        return {
            "blocks": "/".join(str(b) for b in params.blocks),
            "blocks dropped": params.block_choice,
        }

    def ladder(self, stages: list[Stage]) -> list[DepthParams]:
        return [
            DepthParams(blocks=[s.num_blocks for s in stages]),
            DepthParams(blocks=[s.min_blocks for s in stages], block_choice="norm"),
        ]


def blocks_to_drop(
    model: nn.Module,
    stages: list[Stage],
    keep: list[int],
    choice: str,
    images: torch.Tensor,
) -> list[Block]:
    """The blocks `choice` (`last`, `norm` or `sensitivity`, module docstring) drops so that
    stage i keeps `keep[i]` blocks. `last` drops each stage's last ones; the other two drop,
    in each stage, the droppable blocks least important by `choice`, scored on `images` with
    `model` whole, among the sets whose removal leaves the stage's blocks in the structures
    that dropping the last ones leaves (so `restore` rebuilds the student)."""
    if choice == "last":
        return _last_blocks(stages, keep)
    dropping = [(stage, stage.num_blocks - k) for stage, k in zip(stages, keep, strict=True)]
    dropping = [(stage, n) for stage, n in dropping if n > 0]
    candidates = [b for stage, n in dropping for b in stage.blocks if b.removable]
    if not candidates:
        return []
    score = _branch_norms if choice == "norm" else _removal_divergence
    scores = score(model, candidates, images)
    chosen: list[Block] = []
    for stage, n in dropping:
        chosen += _best_drop(model, stage, n, scores)
    return chosen


MAX_SETS = 10_000  # drop sets compared in a stage of mixed block structures


def _best_drop(model: nn.Module, stage: Stage, n: int, scores: dict[Block, float]) -> list[Block]:
    """The `n` droppable blocks of `stage` of least total score whose removal leaves the
    structures `stage.blocks_to_drop` leaves; those last blocks when the sets to compare are
    too many."""
    last = stage.blocks_to_drop(stage.num_blocks - n)  # raises with the allowed range
    own = [b for b in stage.blocks if b.removable]
    signatures = {b: _signature(_module(model, b)) for b in stage.blocks}
    if len({signatures[b] for b in own}) == 1:  # one structure: any n of them will do
        return sorted(own, key=lambda b: (scores[b], b.index))[:n]
    if math.comb(len(own), n) > MAX_SETS:
        return last

    def left(dropped: tuple[Block, ...]) -> list[Any]:
        return [(b.seq_path, signatures[b]) for b in stage.blocks if b not in dropped]

    target = left(tuple(last))
    valid = [d for d in itertools.combinations(own, n) if left(d) == target]
    best = min(valid, key=lambda d: (sum(scores[b] for b in d), [b.index for b in d]))
    return list(best)


def _last_blocks(stages: list[Stage], keep: list[int]) -> list[Block]:
    return [b for st, n in zip(stages, keep, strict=True) for b in st.blocks_to_drop(n)]


def _check_stage_count(stages: list[Stage], params: DepthParams) -> None:
    if len(params.blocks) != len(stages):
        raise ValueError(f"blocks has {len(params.blocks)} stages, the teacher {len(stages)}")


def _module(model: nn.Module, block: Block) -> nn.Module:
    return model.get_submodule(block.seq_path)[block.index]


def _signature(module: nn.Module) -> tuple[Any, ...]:
    return (
        type(module).__name__,
        tuple((n, tuple(t.shape)) for n, t in module.state_dict().items()),
    )


@torch.no_grad()
def _branch_norms(
    model: nn.Module, blocks: list[Block], images: torch.Tensor
) -> dict[Block, float]:
    """||block(x) - x|| / ||x|| of each block on `images`, from one forward pass."""
    scores: dict[Block, float] = {}

    def recorder(block: Block):
        def hook(_module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            scores[block] = float((out - x).norm() / x.norm().clamp_min(1e-12))

        return hook

    handles = [_module(model, b).register_forward_hook(recorder(b)) for b in blocks]
    try:
        model.eval()(images)
    finally:
        for h in handles:
            h.remove()
    return scores


@torch.no_grad()
def _removal_divergence(
    model: nn.Module, blocks: list[Block], images: torch.Tensor
) -> dict[Block, float]:
    """KL(p || p without the block) of `model`'s softmax outputs on `images`, per block: the
    block is skipped by a forward hook that hands its input on."""
    model.eval()
    reference = torch.log_softmax(model(images).float(), dim=1)
    scores: dict[Block, float] = {}
    for block in blocks:
        handle = _module(model, block).register_forward_hook(lambda _m, args, _out: args[0])
        try:
            without = torch.log_softmax(model(images).float(), dim=1)
        finally:
            handle.remove()
        kl = (reference.exp() * (reference - without)).sum(dim=1).mean()
        scores[block] = float(kl)
    return scores
