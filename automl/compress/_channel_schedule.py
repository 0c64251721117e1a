"""Iterative channel pruning: channels are masked while the student trains, more at each
update, and removed physically once it has trained.

torch-pruning cannot remove channels from a layer whose weight is parametrized (fake-quant,
sparsity masks), and a student's optimizer holds its parameters, so channels cannot leave a
student mid-training. Instead each layer that writes a channel a stage may lose (a conv's
or linear layer's filters and bias, a norm layer's scale and shift) sees its parameters times
a 0/1 mask along its output channels (`ChannelMask`). Every writer of a torch-pruning
dependency group is masked alike, so a masked channel is exactly zero everywhere it is read,
as if it were gone: the activations the zoo's CNNs use (ReLU, hard-swish, GELU) map 0 to 0.

At each update a folded copy of the student is scored with the architecture's criterion, and
torch-pruning chooses, group by group, the channels to remove at the fraction of the moment;
channels already masked score lowest, so they stay masked. After training, `remove_masked`
removes the masked channels with torch-pruning, leaving the same function in fewer channels.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import parametrize

from automl.compress._base import fold
from automl.stages import Stage, stage_of_modules

UPDATES = 5  # mask updates over a training run (torch-pruning's examples use 5 iterative steps)
RAMP_END = 0.75  # of the steps: the last update, as in the sparsity schedule
Masks = dict[str, torch.Tensor]  # module name -> 0/1 over its output channels


class ChannelMask(nn.Module):
    """A parametrization: the parameter times a 0/1 mask along its first (output channel)
    dimension; the mask is a buffer the schedule changes in place."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(channels))

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.mask.view(-1, *[1] * (value.dim() - 1)).to(value.dtype)


def make_pruner(
    model: nn.Module,
    stages: list[Stage],
    keep: list[float],
    importance: tp.importance.Importance,
    example: torch.Tensor,
    round_to: int,
) -> tp.pruner.MetaPruner:
    """torch-pruning's pruner for `model`, a stage's layers at ratio 1 - keep[stage], the
    classifier's outputs never pruned."""
    ratios = stage_ratios(model, stages, keep)
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    return tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=[classifier] if isinstance(classifier, nn.Module) else [],
        round_to=round_to,
    )


def stage_ratios(
    model: nn.Module, stages: list[Stage], keep: list[float]
) -> dict[nn.Module, float]:
    """The fraction of its output channels each conv and linear layer loses: its stage's
    1 - keep (modules outside every stage take the nearest stage's)."""
    owner = stage_of_modules(model, stages)
    return {
        module: 1.0 - keep[owner[name]]
        for name, module in model.named_modules()
        if name in owner and isinstance(module, nn.Conv2d | nn.Linear)
    }


def writers(pruner: tp.pruner.MetaPruner, group: tp.dependency.Group) -> list[nn.Module]:
    """The layers of `group` whose parameters write its channels: every layer the group
    prunes along its outputs (norm layers count: their scale and shift are per channel)."""
    return [
        dep.target.module
        for dep, _ in group
        if isinstance(dep.target.module, nn.Module)
        and pruner.DG.is_out_channel_pruning_fn(dep.handler)
    ]


def attach_masks(
    model: nn.Module, stages: list[Stage], keep: list[float], twin: nn.Module, example: torch.Tensor
) -> None:
    """Register a `ChannelMask` (all ones) on the weight and bias of every writer of a group
    that loses channels at `keep`, found on `twin`, a folded copy of `model`."""
    pruner = make_pruner(twin, stages, keep, tp.importance.MagnitudeImportance(p=2), example, 1)
    ratios = stage_ratios(twin, stages, keep)
    names = {m: n for n, m in twin.named_modules()}
    targets: set[str] = set()
    for group in pruner.DG.get_all_groups(ignored_layers=list(pruner.ignored_layers)):
        if ratios.get(group[0].dep.target.module, 0.0) <= 0.0:
            continue
        targets.update(names[m] for m in writers(pruner, group) if m in names)
    own = dict(model.named_modules())
    for name in sorted(targets):
        module = own[name]
        for pname in ("weight", "bias"):
            value = getattr(module, pname, None)
            if isinstance(value, torch.Tensor) and value.dim() >= 1:
                parametrize.register_parametrization(module, pname, ChannelMask(value.shape[0]))


def current_masks(model: nn.Module) -> Masks:
    """The mask of every module whose weight or bias carries a `ChannelMask`."""
    found: Masks = {}
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for plist in module.parametrizations.values():  # type: ignore[union-attr]
            for p in plist:
                if isinstance(p, ChannelMask):
                    found[name] = p.mask.detach().clone()
    return found


def set_masks(model: nn.Module, masks: Masks) -> None:
    own = dict(model.named_modules())
    for name, mask in masks.items():
        for plist in own[name].parametrizations.values():  # type: ignore[union-attr]
            for p in plist:
                if isinstance(p, ChannelMask):
                    p.mask.copy_(mask.to(p.mask.device))


class KeepMaskedLowest(tp.importance.Importance):
    """`base`'s scores, with the channels already masked (by their group's root layer) scored
    lowest, so torch-pruning removes them first; where `base` has no score, the L2 norm."""

    def __init__(self, base: tp.importance.Importance, masks: Mapping[nn.Module, torch.Tensor]):
        self.base = base
        self.masks = masks
        self.fallback = tp.importance.MagnitudeImportance(p=2)

    def __call__(self, group: tp.dependency.Group) -> torch.Tensor:
        scores = self.base(group)
        if scores is None:
            scores = self.fallback(group)
        scores = scores.detach().float().clone()
        dep, idxs = group[0]
        mask = self.masks.get(dep.target.module)
        if mask is not None:
            root = torch.tensor(group[0].root_idxs, dtype=torch.long)
            gone = (mask.to(scores.device)[torch.tensor(idxs, dtype=torch.long)] == 0).cpu()
            scores[root[gone].to(scores.device)] = -math.inf
        return scores


def choose_masks(
    twin: nn.Module,
    stages: list[Stage],
    keep: list[float],
    base: tp.importance.Importance,
    masks: Masks,
    example: torch.Tensor,
    round_to: int,
    prepare: Callable[[], None] | None = None,
) -> Masks:
    """The masks that leave stage i with about keep[i] of its channels in `twin` (a folded
    copy of the student), chosen group by group by torch-pruning with `base`, the channels
    of `masks` first. `prepare()` runs before the choice (the criterion's own step)."""
    names = {m: n for n, m in twin.named_modules()}
    own = dict(twin.named_modules())
    importance = KeepMaskedLowest(base, {own[n]: m for n, m in masks.items()})
    pruner = make_pruner(twin, stages, keep, importance, example, round_to)
    if prepare is not None:
        prepare()
    chosen = {name: torch.ones_like(mask) for name, mask in masks.items()}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            name = names.get(dep.target.module)
            if name in chosen and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                chosen[name][torch.tensor(idxs, dtype=torch.long)] = 0.0
    return chosen


def folded_copy(model: nn.Module) -> nn.Module:
    """A plain copy of `model` in eval mode, every parametrization folded into its weights."""
    twin = copy.deepcopy(model).eval()
    fold(twin)
    return twin


def remove_masked(
    model: nn.Module, stages: list[Stage], keep: list[float], example: torch.Tensor, round_to: int
) -> None:
    """Fold `model` and remove its channels: the masked ones, which are exactly the count the
    final fraction `keep` asks for once the schedule has run; before training (no channel
    masked yet) the smallest by L2 norm, which gives the final shapes."""
    masks = current_masks(model)
    fold(model)
    model.eval()
    own = dict(model.named_modules())
    importance = KeepMaskedLowest(
        tp.importance.MagnitudeImportance(p=2), {own[n]: m for n, m in masks.items()}
    )
    make_pruner(model, stages, keep, importance, example, round_to).step()
    model.zero_grad(set_to_none=True)
