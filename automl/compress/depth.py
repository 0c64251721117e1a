"""Depth: each stage keeps some of its blocks. A block can go when its output has the shape of
its input (see `automl.stages`); a stage's first block always stays, and blocks are cut
from the end of the stage."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

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
from automl.stages import Stage, drop_blocks


class DepthParams(TechniqueParams):
    # Stages differ in how many blocks they hold, so one value cannot serve them all.
    blocks: Annotated[list[Annotated[int, Field(ge=1)]], StageField(shareable=False)]


@register_technique
class Depth(Technique):
    name = "depth"
    order = 10
    Params = DepthParams
    space: ClassVar[dict[str, Any]] = {
        "blocks": {"type": "int"}
    }  # per stage, from its fewest to all of its blocks

    def stage_range(self, field_name: str, stage: Stage) -> tuple[int, int]:
        return stage.min_blocks, stage.num_blocks

    def apply(self, student: Student, params: DepthParams, ctx: BuildContext) -> None:
        self.restore(student.model, student.stages, params)
        student.replays.append(lambda model: self.restore(model, student.stages, params))

    def restore(self, model: nn.Module, stages: list[Stage], params: DepthParams) -> None:
        if len(params.blocks) != len(stages):
            raise ValueError(f"blocks has {len(params.blocks)} stages, the teacher {len(stages)}")
        drop_blocks(
            model,
            [b for st, n in zip(stages, params.blocks, strict=True) for b in st.blocks_to_drop(n)],
        )

    def deploy_form(self, params: DepthParams) -> DeployForm:
        return DeployForm()

    def describe(self, params: DepthParams) -> dict[str, str]:
        return {"blocks": "/".join(str(b) for b in params.blocks)}

    def ladder(self, stages: list[Stage]) -> list[DepthParams]:
        return [
            DepthParams(blocks=[s.num_blocks for s in stages]),
            DepthParams(blocks=[s.min_blocks for s in stages]),
        ]
