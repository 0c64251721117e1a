"""Unstructured magnitude pruning: the smallest weights of each stage's conv and linear layers
are set to zero by a mask that holds through distillation (a parametrization, as fake-quant
is), so training adapts the weights that remain.

`sparsity` is the fraction of a stage's weights removed. `sparsity_scope` says how:

- `local`: every layer of stage i loses its own `sparsity[i]` smallest weights (by |w|);
- `global`: the same number of weights in all, Σ sparsity[i] x weights of stage i, removed
  below one magnitude threshold across the network, so layers with many small weights give
  more. The pruning guides contrast the two (Blalock et al. 2020, "What is the state of
  neural network pruning?", and Zhu & Gupta 2017 prune layer by layer); which serves a BN
  network better is measured in BENCHMARKS.md, not assumed.

The stem and the head stay dense, as is usual (Gale et al. 2019): they are small and
sensitive. Packed, a sparse weight costs its non-zeros at their bits plus the cheaper of a
bitmap (one bit per weight) or an index list (one index of ceil(log2 n) bits per non-zero).
ONNX Runtime on a CPU runs sparse weights at dense speed, so sparsity shrinks the packed file
and claims no speed-up.
"""

from __future__ import annotations

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
    Student,
    Technique,
    TechniqueParams,
    TensorCost,
    position_bits,
)
from automl.stages import Stage, stage_membership

SPARSIFIABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
MAX_SPARSITY = 0.99
DENSE_SPEED = (
    "Unstructured sparsity shrinks the packed file (model.packed) only: ONNX Runtime on a CPU "
    "runs the zeroed weights at dense speed, so no latency gain is claimed for it."
)


class SparsityParams(TechniqueParams):
    sparsity: PerStage[
        Annotated[float, Field(ge=0, le=MAX_SPARSITY, description="fraction of weights zeroed")]
    ]
    sparsity_scope: Literal["local", "global"] = "local"


@register_technique
class Sparsity(Technique):
    name = "sparsity"
    order = 30
    Params = SparsityParams
    space: ClassVar[dict[str, Any]] = {
        "sparsity": {"type": "float", "low": 0.0, "high": 0.9, "step": 0.1},
        "sparsity_scope": {"type": "choice", "values": ["local", "global"]},
    }

    def apply(self, student: Student, params: SparsityParams, ctx: BuildContext) -> None:
        layers = sparse_layers(student, params)
        masks = magnitude_masks(
            [m.weight.detach() for _, m, _ in layers],
            [params.sparsity[s] for _, _, s in layers],
            params.sparsity_scope,
        )
        for (_, module, _), mask in zip(layers, masks, strict=True):
            parametrize.register_parametrization(module, "weight", WeightMask(mask))

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
    the smallest magnitudes over all tensors together. Ties at the threshold are broken by
    position, so exactly the asked number goes.
    """
    counts = [round(s * w.numel()) for w, s in zip(weights, sparsity, strict=True)]
    if scope == "local":
        return [
            _drop_smallest(w.abs().flatten(), k).view_as(w)
            for w, k in zip(weights, counts, strict=True)
        ]
    if scope != "global":
        raise ValueError(f"unknown sparsity scope {scope!r}; allowed: local, global")
    flat = torch.cat([w.abs().flatten() for w in weights]) if weights else torch.zeros(0)
    keep = _drop_smallest(flat, sum(counts))
    parts = keep.split([w.numel() for w in weights])
    return [m.view_as(w) for m, w in zip(parts, weights, strict=True)]


def _drop_smallest(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.ones_like(magnitudes)
    if k > 0:
        mask[torch.topk(magnitudes, k, largest=False, sorted=False).indices] = 0.0
    return mask


class WeightMask(nn.Module):
    """A parametrization: the layer sees its weight times a fixed 0/1 mask (a buffer, so the
    schedules that grow or move it change it in place)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask
