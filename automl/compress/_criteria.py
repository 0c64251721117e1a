"""Channel importance criteria for structured pruning, registered by name.

Each gives a torch-pruning importance, and, where the scores need more than the weights, a
`prepare` step the pruner runs first on a labelled calibration batch (gradients for Taylor,
the diagonal of the empirical Fisher for the second-order criterion, trained L0 gates, the
metrics of NNI's pruners). What a `prepare` leaves on modules besides `.grad` is under the
attribute SCORE, which `clear_scores` removes once the pruner has read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function

from automl.compress._l0 import train_gates
from automl.compress._nni import INSTALL, PRUNERS, channel_scores, nni_installed

# (model, inputs, labels, keep): leaves what the scores read; `keep` is the fraction of its
# channels each module of a stage keeps (the architecture's ratio), for criteria that learn
# towards it
Prepare = Callable[[nn.Module, torch.Tensor, torch.Tensor, Mapping[nn.Module, float]], None]
EMPTY: Mapping[nn.Module, float] = {}
SCORE = "_criterion_score"  # a per-channel score a `prepare` leaves on a module


@dataclass(frozen=True)
class Criterion:
    make: Callable[[], tp.importance.Importance]
    prepare: Prepare | None = None


def loss_gradients(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, keep: Mapping = EMPTY
) -> None:
    """`.grad` of every parameter: the gradient of the batch's cross-entropy."""
    model.zero_grad()
    F.cross_entropy(model(inputs), labels).backward()


def fisher_diagonal(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, keep: Mapping = EMPTY
) -> None:
    """`.grad` of every parameter: the mean over the batch of each image's squared gradient,
    the diagonal of the empirical Fisher, which stands in for the Hessian's diagonal in
    Optimal Brain Damage (LeCun et al. 1990): removing weight w costs about w**2 * H_ww / 2.

    torch-pruning's own accumulation (`GroupHessianImportance.accumulate_grad`, 1.6) keys its
    sums by parameter but looks them up by name, so it keeps the last image's gradient only;
    this sums per image itself."""
    params = [p for p in model.parameters() if p.requires_grad]
    sums = [torch.zeros_like(p) for p in params]
    for i in range(len(inputs)):
        model.zero_grad()
        F.cross_entropy(model(inputs[i : i + 1]), labels[i : i + 1]).backward()
        for total, p in zip(sums, params, strict=True):
            if p.grad is not None:
                total += p.grad.detach() ** 2
    for total, p in zip(sums, params, strict=True):
        p.grad = total / len(inputs)


def l0_gates(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, keep: Mapping = EMPTY
) -> None:
    """Each BatchNorm's SCORE: the open probability of its channels' L0 gates, trained
    towards `keep` (`automl.compress._l0`; the labels are not used: the target is the
    network itself)."""
    for bn, score in train_gates(model, inputs, keep).items():
        setattr(bn, SCORE, score)


def nni_scores(pruner: str) -> Prepare:
    """A `prepare` that leaves on each convolution of a stage the per-output-channel metric of
    NNI's `pruner` (`automl.compress._nni`)."""

    def prepare(
        model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, keep: Mapping = EMPTY
    ) -> None:
        for module, score in channel_scores(pruner, model, keep, (inputs, labels)).items():
            setattr(module, SCORE, score)

    return prepare


def clear_scores(model: nn.Module) -> None:
    """Remove what a `prepare` left on modules besides gradients."""
    for module in model.modules():
        module.__dict__.pop(SCORE, None)


class ScoreImportance(tp.importance.Importance):
    """Per channel of a group: the mean of the SCOREs a `prepare` left on the group's layers
    whose output channels these are (BatchNorms for L0 gates, convolutions for NNI's
    metrics); a group where no layer has one falls back to the L2 norm."""

    OUTPUTS = (
        function.prune_batchnorm_out_channels,
        function.prune_conv_out_channels,
        function.prune_linear_out_channels,
    )

    def __init__(self) -> None:
        self.fallback = tp.importance.MagnitudeImportance(p=2)

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        n = len(group[0].root_idxs)
        total, layers = torch.zeros(n), 0
        for i, (dep, idxs) in enumerate(group):
            layer, root = dep.target.module, group[i].root_idxs
            score = getattr(layer, SCORE, None)
            if dep.handler not in self.OUTPUTS or score is None:
                continue
            if any(r is None for r in root):
                continue
            total.scatter_add_(0, torch.tensor(root, dtype=torch.long), score[idxs].float())
            layers += 1
        return total / layers if layers else self.fallback(group)


class SynapticStrength(tp.importance.Importance):
    """Synaptic strength (Lin et al. 2018): a channel matters by the BatchNorm scale that
    sets how strongly it fires, times the norm of the kernels that read it in the next
    layers, so a channel with a large scale that nothing downstream listens to scores low.
    Per channel of a group: the mean |gamma| of its BatchNorms times the mean L2 norm of its
    input kernels; a group without both is scored by whichever it has."""

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        n = len(group[0].root_idxs)
        scales, kernels = torch.zeros(n), torch.zeros(n)
        scale_layers = kernel_layers = 0
        for i, (dep, idxs) in enumerate(group):
            layer, fn, root = dep.target.module, dep.handler, group[i].root_idxs
            if any(r is None for r in root):
                continue
            where = torch.tensor(root, dtype=torch.long)
            if fn == function.prune_batchnorm_out_channels and layer.affine:
                scales.scatter_add_(0, where, layer.weight.detach()[idxs].abs().float().cpu())
                scale_layers += 1
            elif fn in (function.prune_conv_in_channels, function.prune_linear_in_channels):
                if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                    continue  # grouped: not a full kernel per input channel
                w = layer.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)[idxs]
                kernels.scatter_add_(0, where, w.float().cpu())
                kernel_layers += 1
        if not scale_layers and not kernel_layers:
            return None
        score = torch.ones(n)
        if scale_layers:
            score *= scales / scale_layers
        if kernel_layers:
            score *= kernels / kernel_layers
        return score


_CRITERIA: dict[str, Criterion] = {
    "l2": Criterion(lambda: tp.importance.MagnitudeImportance(p=2)),
    "l1": Criterion(lambda: tp.importance.MagnitudeImportance(p=1)),
    "bn_scale": Criterion(tp.importance.BNScaleImportance),
    # He et al. 2019: the filters nearest the geometric median of their layer are the most
    # replaceable by the others, whatever their norm
    "fpgm": Criterion(tp.importance.FPGMImportance),
    "synaptic": Criterion(SynapticStrength),
    "taylor": Criterion(tp.importance.TaylorImportance, prepare=loss_gradients),
    # second order: torch-pruning's OBD scores read `.grad` as the Hessian's diagonal
    "hessian": Criterion(tp.importance.HessianImportance, prepare=fisher_diagonal),
    # Louizos et al. 2018: hard-concrete gates trained with an L0 penalty (_l0.py)
    "l0": Criterion(ScoreImportance, prepare=l0_gates),
    "random": Criterion(tp.importance.RandomImportance),
    # NNI 3.0's pruners' metrics (an optional extra), channels removed by torch-pruning
    **{name: Criterion(ScoreImportance, prepare=nni_scores(cls)) for name, cls in PRUNERS.items()},
}


def list_criteria(pattern: str = "") -> list[str]:
    return sorted(name for name in _CRITERIA if pattern in name)


def get_criterion(name: str) -> Criterion:
    try:
        return _CRITERIA[name]
    except KeyError:
        raise ValueError(f"unknown pruning criterion {name!r}; known: {list_criteria()}") from None


def known_criterion(name: str) -> str:
    """A pydantic validator: `name` when it is a registered criterion whose packages are
    installed."""
    get_criterion(name)
    if name in PRUNERS and not nni_installed():
        raise ValueError(f"criterion {name!r} needs NNI, an optional extra: {INSTALL}")
    return name
