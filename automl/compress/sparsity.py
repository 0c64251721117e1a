"""Unstructured magnitude pruning: the smallest weights of each stage's conv and linear layers
are set to zero by a mask that holds through distillation (a parametrization, as fake-quant
is), so training adapts the weights that remain.

`sparsity` is the fraction of a stage's weights removed. `sparsity_scope` says how:

- `local`: every layer of stage i loses its own `sparsity[i]` smallest weights (by |w|);
- `global`: the same number of weights in all, Σ sparsity[i] x weights of stage i, removed
  below one magnitude threshold across the network, so layers with many small weights give
  more;
- `lamp`: the same number, below one threshold of LAMP scores (Lee et al. 2021,
  "Layer-adaptive sparsity for the magnitude-based pruning"): a weight's squared magnitude
  over the sum of the squares of the weights of its layer no smaller than it. Scores are
  comparable across layers, and each layer's largest weight scores 1, so no layer is emptied
  as global magnitude pruning can empty a layer of small weights.

The pruning guides contrast local and global (Blalock et al. 2020, "What is the state of
neural network pruning?"; Zhu & Gupta 2017 prune layer by layer); which serves a BN network
better is measured in BENCHMARKS.md, not assumed.

`sparsity_schedule` says when:

- `one_shot`: the masks are cut from the teacher's weights before the student trains;
- `iterative`: the student starts dense and its sparsity rises along the polynomial decay of
  Zhu and Gupta 2017, s_t = s_f (1 - (1 - t / t_end)^3) (initial sparsity 0, from the first
  step, power 3; TensorFlow Model Optimization's `PolynomialDecay`), pruning the smallest
  weights of the moment every `total / UPDATES` steps until `t_end = RAMP_END x total`, and
  training on at the final sparsity after that.

`sparse_training` moves the mask at a fixed sparsity, each update until `t_end` (Evci et al.
2020's schedule: a drop fraction `DROP` decayed by a cosine, `DROP / 2 (1 + cos(pi t /
t_end))`): in every layer that fraction of its kept weights, the smallest, is dropped and as
many regrow, at random (`set`, Mocanu et al. 2018) or where the dense gradient of the current
batch is largest (`rigl`, Evci et al. 2020), starting from zero; `static` keeps the mask.

The stem and the head stay dense, as is usual (Gale et al. 2019): they are small and
sensitive. Packed, a sparse weight costs its non-zeros at their bits plus the cheaper of a
bitmap (one bit per weight) or an index list (one index of ceil(log2 n) bits per non-zero).
ONNX Runtime on a CPU runs sparse weights at dense speed, so sparsity shrinks the packed file
and claims no speed-up.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from automl.compress import register_technique
from automl.compress._base import (
    BuildContext,
    DeployForm,
    PerStage,
    StepHook,
    Student,
    Technique,
    TechniqueParams,
    TensorCost,
    position_bits,
)
from automl.stages import Stage, stage_membership

SPARSIFIABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
MAX_SPARSITY = 0.99
UPDATES = 20  # mask updates over a training run, at most
RAMP_END = 0.75  # of the steps: the last update (Evci et al. 2020's T_end)
DROP = 0.3  # dynamic sparse training's initial drop fraction (Evci et al. 2020)
DENSE_SPEED = (
    "Unstructured sparsity shrinks the packed file (model.packed) only: ONNX Runtime on a CPU "
    "runs the zeroed weights at dense speed, so no latency gain is claimed for it."
)


class SparsityParams(TechniqueParams):
    sparsity: PerStage[
        Annotated[float, Field(ge=0, le=MAX_SPARSITY, description="fraction of weights zeroed")]
    ]
    sparsity_scope: Literal["local", "global", "lamp"] = "local"
    sparsity_schedule: Literal["one_shot", "iterative"] = "one_shot"
    sparse_training: Literal["static", "set", "rigl"] = "static"


@register_technique
class Sparsity(Technique):
    name = "sparsity"
    order = 30
    Params = SparsityParams
    space: ClassVar[dict[str, Any]] = {
        "sparsity": {"type": "float", "low": 0.0, "high": 0.9, "step": 0.1},
        "sparsity_scope": {"type": "choice", "values": ["local", "global", "lamp"]},
        "sparsity_schedule": {"type": "choice", "values": ["one_shot", "iterative"]},
        "sparse_training": {"type": "choice", "values": ["static", "set", "rigl"]},
    }

    def apply(self, student: Student, params: SparsityParams, ctx: BuildContext) -> None:
        layers = sparse_layers(student, params)
        weights = [m.weight.detach() for _, m, _ in layers]
        if params.sparsity_schedule == "iterative":  # dense first; the schedule prunes
            masks = [torch.ones_like(w) for w in weights]
        else:
            targets = [params.sparsity[s] for _, _, s in layers]
            masks = magnitude_masks(weights, targets, params.sparsity_scope)
        for (_, module, _), mask in zip(layers, masks, strict=True):
            parametrize.register_parametrization(
                module, "weight", WeightMask(mask, params.sparse_training == "rigl")
            )

    def during_training(self, student: Student, params: SparsityParams) -> list[StepHook]:
        if params.sparsity_schedule == "one_shot" and params.sparse_training == "static":
            return []
        layers = sparse_layers(student, params)
        if not layers:
            return []
        return [MaskSchedule(layers, params)]

    def account(
        self, student: Student, params: SparsityParams, costs: dict[str, TensorCost]
    ) -> None:
        for name, module, _ in sparse_layers(student, params):
            cost = costs[f"{name}.weight"]
            numel = module.weight.numel()
            with torch.no_grad():
                nonzeros = int(torch.count_nonzero(module.weight))
            if nonzeros < numel:  # else stored dense, with no positions
                cost.values = nonzeros
                cost.overhead_bits += position_bits(numel, nonzeros)

    def deploy_form(self, params: SparsityParams) -> DeployForm:
        return DeployForm(notes=(DENSE_SPEED,) if max(params.sparsity) > 0 else ())

    def describe(self, params: SparsityParams) -> dict[str, str]:
        return {
            "sparsity": "/".join(f"{s:.2g}" for s in params.sparsity),
            "sparsity scope": params.sparsity_scope,
            "sparsity schedule": params.sparsity_schedule,
            "sparse training": params.sparse_training,
        }

    def ladder(self, stages: list[Stage]) -> list[SparsityParams]:
        return [
            SparsityParams(sparsity=[s] * len(stages), sparsity_scope=scope)
            for s, scope in ((0.0, "local"), (0.5, "local"), (0.9, "global"))
        ]


def sparse_layers(student: Student, params: SparsityParams) -> list[tuple[str, nn.Module, int]]:
    """(name, module, stage) of every conv and linear layer inside a stage whose sparsity is
    above zero; the stem and the head are never among them."""
    membership = stage_membership(student.model, student.stages)
    return [
        (name, module, membership[name])
        for name, module in student.model.named_modules()
        if isinstance(module, SPARSIFIABLE)
        and membership.get(name) is not None
        and params.sparsity[membership[name]] > 0
    ]


def magnitude_masks(
    weights: list[torch.Tensor], sparsity: list[float], scope: str
) -> list[torch.Tensor]:
    """Masks (1 keep, 0 prune; float, the weights' shapes) removing the smallest |w|.

    `local`: round(sparsity[i] * n_i) weights of each tensor i. `global`: the same total,
    the smallest magnitudes over all tensors together; `lamp`: the same total, the smallest
    LAMP scores (`lamp_scores`). Ties at the threshold are broken by position, so exactly the
    asked number goes.
    """
    counts = [round(s * w.numel()) for w, s in zip(weights, sparsity, strict=True)]
    if scope == "local":
        return [
            _drop_smallest(w.abs().flatten(), k).view_as(w)
            for w, k in zip(weights, counts, strict=True)
        ]
    if scope not in ("global", "lamp"):
        raise ValueError(f"unknown sparsity scope {scope!r}; allowed: local, global, lamp")
    score = lamp_scores if scope == "lamp" else torch.abs
    flat = torch.cat([score(w).flatten() for w in weights]) if weights else torch.zeros(0)
    keep = _drop_smallest(flat, sum(counts))
    parts = keep.split([w.numel() for w in weights])
    return [m.view_as(w) for m, w in zip(parts, weights, strict=True)]


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every weight (Lee et al. 2021): w_u^2 / sum of w_v^2 over the weights v of
    the tensor with |w_v| >= |w_u| (itself included); in (0, 1], the largest weight 1."""
    squares = weight.detach().flatten().double() ** 2
    order = torch.argsort(squares)
    ascending = squares[order]
    tails = torch.flip(torch.cumsum(torch.flip(ascending, [0]), 0), [0])  # sum from u on
    scores = torch.empty_like(squares)
    scores[order] = ascending / tails.clamp_min(1e-300)
    return scores.float().view_as(weight)


def _drop_smallest(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.ones_like(magnitudes)
    if k > 0:
        mask[torch.topk(magnitudes, k, largest=False, sorted=False).indices] = 0.0
    return mask


class WeightMask(nn.Module):
    """A parametrization: the layer sees its weight times a 0/1 mask (a buffer, which the
    schedules that raise or move the sparsity change in place). With `keep_grad`, the
    gradient of the masked weight, dense (zero where the mask is), is kept as `dense_grad`
    after each backward pass: what RigL regrows by."""

    def __init__(self, mask: torch.Tensor, keep_grad: bool = False) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())
        self.keep_grad = keep_grad
        self.dense_grad: torch.Tensor | None = None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        masked = weight * self.mask
        if self.keep_grad and masked.requires_grad:
            masked.register_hook(self._keep)
        return masked

    def _keep(self, grad: torch.Tensor) -> None:
        self.dense_grad = grad.detach()


class MaskSchedule:
    """The step hook of an iterative schedule and of dynamic sparse training (see the module
    docstring): at each update step it raises the sparsity toward its target, then moves
    part of each layer's mask."""

    def __init__(self, layers: list[tuple[str, nn.Module, int]], params: SparsityParams) -> None:
        self.params = params
        self.modules = [module for _, module, _ in layers]
        self.targets = [params.sparsity[stage] for _, _, stage in layers]

    def __call__(self, step: int, total_steps: int) -> None:
        end = max(1, int(RAMP_END * total_steps))
        period = max(1, total_steps // UPDATES)
        if step > end or (step % period and step != end):
            return
        with torch.no_grad():
            if self.params.sparsity_schedule == "iterative":
                self._prune_to(1 - (1 - step / end) ** 3)
            if self.params.sparse_training != "static" and step < end:
                self._move(DROP / 2 * (1 + math.cos(math.pi * step / end)))

    def _masks(self) -> list[WeightMask]:
        return [_mask_of(m) for m in self.modules]

    def _prune_to(self, fraction: float) -> None:
        """Each layer at `fraction` of its target sparsity, the smallest weights of the moment
        going (those already masked count as zero, so they stay masked)."""
        weights = [m.weight.detach() for m in self.modules]  # masked (and quantized) weights
        goals = [fraction * t for t in self.targets]
        for mask, new in zip(
            self._masks(), magnitude_masks(weights, goals, self.params.sparsity_scope), strict=True
        ):
            mask.mask.copy_(new.view_as(mask.mask))

    def _move(self, drop: float) -> None:
        for module, mask in zip(self.modules, self._masks(), strict=True):
            # flat copies in logical order, written back whole: training keeps these tensors
            # channels-last, where flatten() is no view
            keep = mask.mask.flatten().clone()
            active = int(keep.sum())
            k = round(drop * active)
            if k == 0:
                continue
            if self.params.sparse_training == "rigl":
                if mask.dense_grad is None:
                    continue
                score = mask.dense_grad.abs().flatten().float()
            else:
                score = torch.rand(keep.shape, device=keep.device)
            original = module.parametrizations.weight.original  # type: ignore[union-attr]
            values = original.flatten().clone()
            magnitude = torch.where(keep > 0, values.abs(), math.inf)
            dropped = torch.topk(magnitude, k, largest=False).indices
            keep[dropped] = 0.0
            grown = torch.topk(torch.where(keep > 0, -math.inf, score), k).indices
            keep[grown] = 1.0
            values[grown] = 0.0  # new connections start from zero (Evci et al. 2020)
            original.copy_(values.view(original.shape))
            mask.mask.copy_(keep.view(mask.mask.shape))


def _mask_of(module: nn.Module) -> WeightMask:
    return next(
        p
        for p in module.parametrizations.weight  # type: ignore[union-attr]
        if isinstance(p, WeightMask)
    )
