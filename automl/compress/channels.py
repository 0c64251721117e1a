"""Structured channel pruning: each stage keeps a fraction of its output channels; the others are
removed physically with torch-pruning, whose dependency graph (DepGraph) keeps residual and
depthwise couplings consistent. Modules outside every stage take the nearest stage's ratio (the
stem the first, the head the last), since residual connections tie their channels to it. The
classifier's outputs are never pruned.

`channel_schedule` says when:

- `one_shot`: the channels are removed from the teacher's copy before the student trains;
- `iterative`: the student starts with every channel and loses them while it trains, along
  the polynomial decay of Zhu and Gupta 2017 that the sparsity schedule follows (the
  fraction removed s_t = s_f (1 - (1 - t / t_end)^3), t_end at RAMP_END of the steps), in
  UPDATES steps, as torch-pruning's `iterative_steps` prunes a little at a time with training
  between. Each update scores the student of the moment with the criterion; the channels go
  by masks and leave physically after training (`_channel_schedule`). The student trains at
  the teacher's width throughout, so a trial costs more than a one-shot one; latency and MACs
  are its final ones, measured before training on a copy pruned to the final shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import torch
import torch_pruning as tp
from pydantic import AfterValidator, Field
from torch import nn

from automl.compress import register_technique
from automl.compress._base import (
    BuildContext,
    DeployForm,
    PerStage,
    StepHook,
    Student,
    Technique,
    TechniqueParams,
)
from automl.compress._channel_schedule import (
    RAMP_END,
    UPDATES,
    attach_masks,
    choose_masks,
    current_masks,
    folded_copy,
    make_pruner,
    remove_masked,
    set_masks,
)
from automl.compress._criteria import clear_scores, get_criterion, known_criterion
from automl.stages import Stage, stage_of_modules

ROUND_TO = 4  # channels kept per layer are a multiple of this (where the layer has more)


class ChannelsParams(TechniqueParams):
    channel_keep: PerStage[Annotated[float, Field(gt=0, le=1, description="channels kept")]]
    criterion: Annotated[str, AfterValidator(known_criterion)] = "l2"
    channel_schedule: Literal["one_shot", "iterative"] = "one_shot"


@register_technique
class Channels(Technique):
    name = "channels"
    order = 20
    Params = ChannelsParams
    space: ClassVar[dict[str, Any]] = {
        "channel_keep": {"type": "float", "low": 0.25, "high": 1.0, "step": 0.125},
        # the four best of benchmarks/criteria.py on Fashion-MNIST (BENCHMARKS.md)
        "criterion": {"type": "choice", "values": ["synaptic", "taylor", "l1", "l2"]},
        # iterative: no better at equal epochs on Fashion-MNIST and 10x dearer (BENCHMARKS.md)
        "channel_schedule": "one_shot",
    }

    def apply(self, student: Student, params: ChannelsParams, ctx: BuildContext) -> None:
        if params.channel_schedule == "iterative":
            if min(params.channel_keep) < 1.0:  # all channels stay until the schedule moves
                twin = folded_copy(student.model)
                example = ctx.calibration[0][:1]
                attach_masks(student.model, student.stages, params.channel_keep, twin, example)
            return
        history = prune_channels(
            student.model, student.stages, params.channel_keep, params.criterion, ctx.calibration
        )
        example = ctx.calibration[0][:1]
        student.replays.append(lambda model: replay_channels(model, history, example))

    def during_training(self, student: Student, params: ChannelsParams) -> list[StepHook]:
        if params.channel_schedule == "one_shot" or not current_masks(student.model):
            return []
        return [ChannelSchedule(student, params)]

    def finish(self, student: Student, params: ChannelsParams) -> None:
        if params.channel_schedule == "iterative" and min(params.channel_keep) < 1.0:
            example = _context(student).calibration[0][:1]
            example = example.to(next(student.model.parameters()).device)
            remove_masked(student.model, student.stages, params.channel_keep, example, ROUND_TO)

    def deploy_form(self, params: ChannelsParams) -> DeployForm:
        return DeployForm()

    def describe(self, params: ChannelsParams) -> dict[str, str]:
        keep = "/".join(f"{k:.3g}" for k in params.channel_keep)
        return {
            "channels kept": keep,
            "criterion": params.criterion,
            "channel schedule": params.channel_schedule,
        }

    def ladder(self, stages: list[Stage]) -> list[ChannelsParams]:
        return [
            ChannelsParams(channel_keep=[k] * len(stages), channel_schedule=schedule)
            for k, schedule in ((1.0, "one_shot"), (0.5, "one_shot"), (0.25, "iterative"))
        ]


class ChannelSchedule:
    """The step hook of the iterative schedule (module docstring): at each of UPDATES steps
    up to RAMP_END of the training, the masks move to the fraction of the moment."""

    def __init__(self, student: Student, params: ChannelsParams) -> None:
        self.student = student
        self.params = params
        self.spec = get_criterion(params.criterion)

    def __call__(self, step: int, total_steps: int) -> None:
        end = max(1, int(RAMP_END * total_steps))
        if step not in {max(1, round(k * end / UPDATES)) for k in range(1, UPDATES + 1)}:
            return
        removed = 1.0 - (1.0 - min(step, end) / end) ** 3
        keep = [1.0 - (1.0 - k) * removed for k in self.params.channel_keep]
        model, stages = self.student.model, self.student.stages
        device = next(model.parameters()).device
        inputs, labels = (t.to(device) for t in _context(self.student).calibration)
        twin = folded_copy(model)
        owner = stage_of_modules(twin, stages)
        kept = {m: keep[owner[n]] for n, m in twin.named_modules() if n in owner}
        spec = self.spec

        def prepare() -> None:
            if spec.prepare is not None:
                spec.prepare(twin, inputs, labels, kept)

        masks = choose_masks(
            twin, stages, keep, spec.make(), current_masks(model), inputs[:1], ROUND_TO, prepare
        )
        with torch.no_grad():
            set_masks(model, masks)


def _context(student: Student) -> BuildContext:
    if student.context is None:
        raise ValueError("channels: an iterative schedule needs the student's build context")
    return student.context


def prune_channels(
    model: nn.Module,
    stages: list[Stage],
    keep: list[float],
    criterion: str,
    calibration: tuple[torch.Tensor, torch.Tensor],
    round_to: int = ROUND_TO,
) -> list[Any]:
    """Remove output channels in place so that stage i keeps about `keep[i]` of its channels.
    `calibration` is an (inputs, labels) batch: the trace input, and the loss for gradient
    criteria. Returns torch-pruning's record of what was removed (`replay_channels`)."""
    if all(k >= 1.0 for k in keep):
        return []
    spec = get_criterion(criterion)
    owner = stage_of_modules(model, stages)
    inputs, labels = calibration
    pruner = make_pruner(model, stages, keep, spec.make(), inputs[:1], round_to)
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
