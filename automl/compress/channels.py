"""Structured channel pruning: each stage keeps a fraction of its output channels; the others are
removed physically with torch-pruning, whose dependency graph (DepGraph) keeps residual and
depthwise couplings consistent. Modules outside every stage take the nearest stage's ratio (the
stem the first, the head the last), since residual connections tie their channels to it. The
classifier's outputs are never pruned.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
import torch_pruning as tp
from pydantic import AfterValidator, Field
from torch import nn

from automl.compress import register_technique
from automl.compress._base import (
    BuildContext,
    DeployForm,
    PerStage,
    Student,
    Technique,
    TechniqueParams,
)
from automl.compress._criteria import clear_scores, get_criterion, known_criterion
from automl.stages import Stage, stage_of_modules


class ChannelsParams(TechniqueParams):
    channel_keep: PerStage[Annotated[float, Field(gt=0, le=1, description="channels kept")]]
    criterion: Annotated[str, AfterValidator(known_criterion)] = "l2"


@register_technique
class Channels(Technique):
    name = "channels"
    order = 20
    Params = ChannelsParams
    space: ClassVar[dict[str, Any]] = {
        "channel_keep": {"type": "float", "low": 0.25, "high": 1.0, "step": 0.125},
        # the four best of benchmarks/criteria.py on Fashion-MNIST (BENCHMARKS.md)
        "criterion": {"type": "choice", "values": ["synaptic", "taylor", "l1", "l2"]},
    }

    def apply(self, student: Student, params: ChannelsParams, ctx: BuildContext) -> None:
        history = prune_channels(
            student.model, student.stages, params.channel_keep, params.criterion, ctx.calibration
        )
        example = ctx.calibration[0][:1]
        student.replays.append(lambda model: replay_channels(model, history, example))

    def deploy_form(self, params: ChannelsParams) -> DeployForm:
        return DeployForm()

    def describe(self, params: ChannelsParams) -> dict[str, str]:
        keep = "/".join(f"{k:.3g}" for k in params.channel_keep)
        return {"channels kept": keep, "criterion": params.criterion}

    def ladder(self, stages: list[Stage]) -> list[ChannelsParams]:
        return [ChannelsParams(channel_keep=[k] * len(stages)) for k in (1.0, 0.5, 0.25)]


def prune_channels(
    model: nn.Module,
    stages: list[Stage],
    keep: list[float],
    criterion: str,
    calibration: tuple[torch.Tensor, torch.Tensor],
    round_to: int = 4,
) -> list[Any]:
    """Remove output channels in place so that stage i keeps about `keep[i]` of its channels.
    `calibration` is an (inputs, labels) batch: the trace input, and the loss for gradient
    criteria. Returns torch-pruning's record of what was removed (`replay_channels`)."""
    if all(k >= 1.0 for k in keep):
        return []
    spec = get_criterion(criterion)
    owner = stage_of_modules(model, stages)
    ratios = {
        module: 1.0 - keep[owner[name]]
        for name, module in model.named_modules()
        if name in owner and isinstance(module, nn.Conv2d | nn.Linear)
    }
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    inputs, labels = calibration
    pruner = tp.pruner.MetaPruner(
        model,
        inputs[:1],
        importance=spec.make(),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=[classifier] if isinstance(classifier, nn.Module) else [],
        round_to=round_to,
    )
    if spec.prepare is not None:
        kept = {m: keep[owner[n]] for n, m in model.named_modules() if n in owner}
        spec.prepare(model, inputs, labels, kept)
    pruner.step()
    model.zero_grad(set_to_none=True)
    clear_scores(model)
    return list(pruner.pruning_history())


def replay_channels(model: nn.Module, history: list[Any], example: torch.Tensor) -> None:
    """Remove from `model`, shaped as the model `prune_channels` pruned, the very channels it
    removed there (torch-pruning's pruning history replayed on a new dependency graph)."""
    if history:
        graph = tp.DependencyGraph().build_dependency(model.eval(), example_inputs=example)
        graph.load_pruning_history(history)
