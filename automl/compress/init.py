"""Where a student's weights start: the lottery-ticket choice, applied after every other
technique has fixed the student's structure and masks.

- `inherit`: the trained teacher's weights for every block and channel kept (the default
  of every student).
- `rewind`: the kept weights reset to the teacher's weights early in its training (after its
  first epoch, which the teacher cache keeps), as in lottery tickets with rewinding (Frankle
  et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"; Frankle and
  Carbin 2019 reset to the initialisation itself).
- `reinit`: fresh random weights (PyTorch's default initialisation of each layer, seeded by
  the trial) of the very same architecture and masks: the control that tells whether a
  ticket was found (Frankle and Carbin 2019, and Liu et al. 2019 for structured pruning).

Which channels, blocks and weights are kept is decided on the trained teacher either way;
only the values they start from change. The new values are given tensor by tensor after the
student's structural changes are replayed on a teacher-shaped copy of the source
(`Student.replays`), so the shapes match whatever removed channels or blocks.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from automl.compress import register_technique
from automl.compress._act_quant import ActQuant
from automl.compress._base import (
    BuildContext,
    DeployForm,
    Student,
    Technique,
    TechniqueParams,
)
from automl.stages import Stage

NO_REWIND = (
    "init 'rewind' needs the teacher's weights after its first epoch, which the teacher cache "
    "keeps for teachers trained for 2 epochs or more since rewind points were added; retrain "
    "the teacher (python cli.py teacher --retrain) or leave rewind out of search_space.init"
)


class InitParams(TechniqueParams):
    init: Literal["inherit", "rewind", "reinit"] = "inherit"


@register_technique
class Init(Technique):
    name = "init"
    order = 50
    Params = InitParams
    compresses = False
    space: ClassVar[dict[str, Any]] = {
        "init": {"type": "choice", "values": ["inherit", "rewind", "reinit"]}
    }

    def apply(self, student: Student, params: InitParams, ctx: BuildContext) -> None:
        if params.init == "inherit":
            return
        if ctx.teacher is None:
            raise ValueError("init: the build context holds no teacher to shape the source")
        source = copy.deepcopy(ctx.teacher).cpu().eval()
        if params.init == "rewind":
            if ctx.rewind is None:
                raise ValueError(NO_REWIND)
            source.load_state_dict(ctx.rewind)
        else:
            for module in source.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()  # type: ignore[operator]
        for replay in student.replays:
            replay(source)
        transplant(source, student.model)

    def deploy_form(self, params: InitParams) -> DeployForm:
        return DeployForm()

    def describe(self, params: InitParams) -> dict[str, str]:
        return {"init": params.init}

    def ladder(self, stages: list[Stage]) -> list[InitParams]:
        return [InitParams(init="inherit"), InitParams(init="reinit")]


def transplant(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter and buffer of `source` into `target`, which has the same modules
    and shapes; a parametrized weight of `target` (masked, fake-quantized) takes the value
    as its `original`, so masks and quantization stay on top of it."""
    found = dict(source.named_modules())
    with torch.no_grad():
        for name, module in target.named_modules():
            if ".parametrizations" in f".{name}" or isinstance(module, ActQuant):
                continue  # an activation quantizer observes its range while the student trains
            origin = found[name]
            own = list(module.named_parameters(recurse=False))
            own += list(module.named_buffers(recurse=False))
            if parametrize.is_parametrized(module):
                own += [
                    (p, module.parametrizations[p].original)  # type: ignore[index]
                    for p in module.parametrizations  # type: ignore[union-attr]
                ]
            for tname, tensor in own:
                value = getattr(origin, tname)
                if value.shape != tensor.shape:
                    raise ValueError(
                        f"init: {name}.{tname} is {tuple(tensor.shape)} in the student and "
                        f"{tuple(value.shape)} in the source"
                    )
                tensor.copy_(value)
