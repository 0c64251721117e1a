"""A technique defined outside the package, as a user would add one: this file and a
`plugins: [tests.toy_techniques]` line in a config are all it takes (nothing else is edited).

`half_stages` stores the weights of chosen stages at 16 bits (a per-stage dimension, `half`):
the packed size counts 16 bits for them, while the ONNX file keeps fp32.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from automl.compress import (
    BuildContext,
    DeployForm,
    PerStage,
    Student,
    Technique,
    TechniqueParams,
    TensorCost,
    register_technique,
)
from automl.stages import Stage, stage_membership

WEIGHTED = (nn.Conv2d, nn.Linear)


class HalfStagesParams(TechniqueParams):
    half: PerStage[bool]


@register_technique
class HalfStages(Technique):
    name = "half_stages"
    order = 35
    Params = HalfStagesParams
    space: ClassVar[dict[str, Any]] = {"half": {"type": "choice", "values": [False, True]}}

    def apply(self, student: Student, params: HalfStagesParams, ctx: BuildContext) -> None:
        with torch.no_grad():
            for _, module in _halved(student, params):
                module.weight.copy_(module.weight.half().float())

    def account(
        self, student: Student, params: HalfStagesParams, costs: dict[str, TensorCost]
    ) -> None:
        for name, _ in _halved(student, params):
            costs[f"{name}.weight"].bits = 16

    def deploy_form(self, params: HalfStagesParams) -> DeployForm:
        return DeployForm(notes=("half_stages: the ONNX file stores those weights at fp32.",))

    def describe(self, params: HalfStagesParams) -> dict[str, str]:
        return {"fp16 stages": "/".join("y" if h else "n" for h in params.half)}

    def ladder(self, stages: list[Stage]) -> list[HalfStagesParams]:
        return [HalfStagesParams(half=[h] * len(stages)) for h in (False, True)]


def _halved(student: Student, params: HalfStagesParams) -> list[tuple[str, nn.Module]]:
    membership = stage_membership(student.model, student.stages)
    return [
        (name, module)
        for name, module in student.model.named_modules()
        if isinstance(module, WEIGHTED)
        and membership.get(name) is not None
        and params.half[membership[name]]
    ]
