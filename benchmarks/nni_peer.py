"""NNI as a peer on Fashion-MNIST: NNI 3.0's L1-norm channel masks with the same fine-tuning,
against this tool's students that remove the same fraction of each stage's channels.

    python benchmarks/nni_peer.py [--keep 0.25] [--subset 10000] [--epochs 5] [--seeds 0 1 2]

Conditions, on one architecture (every block, `--keep` of each stage's channels, fp32),
trained alike (benchmarks/_controlled.py: same images, epochs, distillation, seeds):

- `ours l1`: channels removed by torch-pruning, ranked by the filter L1 norm over each
  coupled group (the `l1` criterion);
- `ours nni_l1`: channels removed by torch-pruning, ranked by NNI's L1NormPruner metric
  (the `nni_l1` criterion: NNI scores, this tool removes);
- `ours l1, equal weights`: as `ours l1`, keeping sqrt(keep) of each stage's channels, which
  keeps about as many weights as NNI's masks leave non-zero: a mask zeroes a filter but not
  the next layer's kernels that read it, so masking `keep` of the filters leaves `keep` of
  the weights, while removing channels removes both sides, leaving about keep**2;
- `nni l1 masks`: what an NNI 3.0 user gets: L1NormPruner's masks on every convolution of a
  stage at sparse ratio 1 - keep, held through the fine-tuning (as its wrappers hold them),
  the network left dense, because NNI's ModelSpeedup fails in its tracer with current torch.
  Its latency and packed size are the teacher's: zeroed filters are still computed and
  stored. The masks zero a convolution's filters, not the BatchNorm after it, so a masked
  channel still carries the BatchNorm's shift, as in NNI's own simulated pruning.

The `nni_masks` technique below exists for this comparison only: it is registered when this
script runs, not in the tool.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import Field  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402

from automl.compress import register_technique  # noqa: E402
from automl.compress._base import (  # noqa: E402
    BuildContext,
    DeployForm,
    PerStage,
    Student,
    Technique,
    TechniqueParams,
)
from automl.compress._nni import nni_pruning  # noqa: E402
from automl.compress.sparsity import WeightMask  # noqa: E402
from automl.stages import Stage, stage_membership  # noqa: E402

DENSE = "NNI's masks leave the network dense: no channel is removed, so no speed-up."


class NNIMasksParams(TechniqueParams):
    nni_keep: PerStage[Annotated[float, Field(gt=0, le=1, description="filters kept")]]


@register_technique
class NNIChannelMasks(Technique):
    """NNI 3.0's L1NormPruner masks on each stage's convolutions, held as parametrizations."""

    name = "nni_masks"
    order = 20
    Params = NNIMasksParams
    space: ClassVar[dict[str, Any]] = {"nni_keep": {"type": "float", "low": 0.25, "high": 1.0}}

    def apply(self, student: Student, params: NNIMasksParams, ctx: BuildContext) -> None:
        model = student.model
        member = stage_membership(model, student.stages)
        config = [
            {
                "op_names": [
                    n
                    for n, m in model.named_modules()
                    if isinstance(m, nn.Conv2d) and member.get(n) == stage
                ],
                "sparse_ratio": 1.0 - keep,
            }
            for stage, keep in enumerate(params.nni_keep)
            if keep < 1.0
        ]
        if not config:
            return
        pruner = nni_pruning().L1NormPruner(copy.deepcopy(model), config)
        _, masks = pruner.compress()
        modules = dict(model.named_modules())
        for name, targets in masks.items():
            mask = targets["weight"].detach().float().cpu()
            parametrize.register_parametrization(modules[name], "weight", WeightMask(mask))

    def deploy_form(self, params: NNIMasksParams) -> DeployForm:
        return DeployForm(notes=(DENSE,))

    def describe(self, params: NNIMasksParams) -> dict[str, str]:
        return {"NNI filters kept": "/".join(f"{k:.2g}" for k in params.nni_keep)}

    def ladder(self, stages: list[Stage]) -> list[NNIMasksParams]:
        return [NNIMasksParams(nni_keep=[1.0] * len(stages))]


def architecture(stages, keep: float, condition: str):
    from search_spaces import Architecture

    if condition.endswith("@equal_weights"):
        condition, keep = condition.removesuffix("@equal_weights"), math.sqrt(keep)

    raw: dict[str, Any] = {"kd_temperature": 4.0, "kd_alpha": 0.9}
    if condition == "nni_masks":
        raw["techniques"] = ["depth", "nni_masks"]
        raw["stages"] = [{"blocks": s.num_blocks, "nni_keep": keep} for s in stages]
    else:
        raw["techniques"] = ["depth", "channels"]
        raw["stages"] = [{"blocks": s.num_blocks, "channel_keep": keep} for s in stages]
        raw["criterion"] = condition
    return Architecture.model_validate(raw)


def nonzero_weights(exp: Any, arch: Any) -> int:
    """Parameters of `arch`'s student that are not zero, as built (before training)."""
    import torch

    from automl.student.build import build_student

    inputs = exp.data.example_input().cpu()
    calibration = (inputs, torch.zeros(len(inputs), dtype=torch.long))
    model = build_student(exp.teacher.model, exp.stages, arch, calibration).model
    with torch.no_grad():  # a masked weight counts as the layer sees it, not its original
        plain = sum(
            int(torch.count_nonzero(p))
            for name, p in model.named_parameters()
            if ".parametrizations." not in f".{name}"
        )
        masked = sum(
            int(torch.count_nonzero(module.weight))
            for module in model.modules()
            if parametrize.is_parametrized(module, "weight")
        )
    return plain + masked


def main() -> int:
    from _controlled import arguments, compare, experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.25)
    args = arguments(parser)
    exp = experiment(args)
    conditions = {
        "ours l1": "l1",
        "ours nni_l1": "nni_l1",
        "ours l1, equal weights": "l1@equal_weights",
        "nni l1 masks": "nni_masks",
    }
    results = compare(
        exp,
        args,
        conditions,
        lambda condition: architecture(exp.stages, args.keep, condition),
        f"{args.keep} of every stage's channels kept (or masked), fp32 weights",
    )
    print("\n| condition | params (non-zero) | latency ms (median) |\n|---|---|---|")
    for name, rs in results.items():
        latency = sorted(r["latency_ms"] for r in rs)[len(rs) // 2]
        arch = architecture(exp.stages, args.keep, conditions[name])
        nonzero = nonzero_weights(exp, arch)
        print(f"| {name} | {rs[0]['params']:,} ({nonzero:,}) | {latency:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
