"""A technique that injects failures, for the controller contract (tests/controllers/):
`raise` fails while the student is built, `nan` poisons its weights after the first training
step, so that the real training loop meets a NaN loss (as a diverging student does: its
latency and size are measured first, on sound weights). Enabled through
`plugins: [tests.fault_technique]`."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from automl.compress import (
    BuildContext,
    DeployForm,
    StepHook,
    Student,
    Technique,
    TechniqueParams,
    register_technique,
)
from automl.stages import Stage


class FaultParams(TechniqueParams):
    fault: Literal["none", "raise", "nan"] = "none"


@register_technique
class Fault(Technique):
    name = "fault"
    order = 99
    Params = FaultParams
    space: ClassVar[dict[str, Any]] = {
        "fault": {"type": "choice", "values": ["none", "raise", "nan"]}
    }

    def apply(self, student: Student, params: FaultParams, ctx: BuildContext) -> None:
        if params.fault == "raise":
            raise RuntimeError("injected fault")

    def during_training(self, student: Student, params: FaultParams) -> list[StepHook]:
        if params.fault != "nan":
            return []

        def poison(step: int, total_steps: int) -> None:
            if step == 1:
                with torch.no_grad():
                    for p in student.model.parameters():
                        p.mul_(float("nan"))

        return [poison]

    def deploy_form(self, params: FaultParams) -> DeployForm:
        return DeployForm()

    def describe(self, params: FaultParams) -> dict[str, str]:
        return {"fault": params.fault}

    def ladder(self, stages: list[Stage]) -> list[FaultParams]:
        return [FaultParams()]
