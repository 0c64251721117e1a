"""Where a student's weights start: inherit, rewind to the teacher's early weights, or reinit;
the kept channels, blocks and masks are the same in all three."""

from __future__ import annotations

import pytest
import timm
import torch
from torch.nn.utils import parametrize

from automl.compress.channels import ChannelsParams
from automl.compress.depth import DepthParams
from automl.compress.init import NO_REWIND, InitParams
from automl.compress.sparsity import SparsityParams
from automl.compress.weight_quant import WeightQuantParams
from automl.config import validate_config
from automl.errors import UserError
from automl.run.search import run_search
from automl.stages import find_stages
from automl.student.build import build_student
from search_spaces import Architecture
from tests.conftest import tiny_raw

X = torch.randn(8, 1, 16, 16)
Y = torch.randint(0, 10, (8,))


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", in_chans=1, num_classes=10).eval()
    return model, find_stages(model, X[:1])


def arch(stages, init: str) -> Architecture:
    n = len(stages)
    return Architecture.compose(
        {
            "depth": DepthParams(blocks=[s.min_blocks for s in stages]),
            "channels": ChannelsParams(channel_keep=[0.5, 0.75, 0.5, 0.25], criterion="l1"),
            "sparsity": SparsityParams(sparsity=[0.5] * n, sparsity_scope="global"),
            "weight_quant": WeightQuantParams(bits=[8] * n),
            "init": InitParams(init=init),
        }
    )


def raw_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every float parameter and buffer, a parametrized weight by its `original`."""
    found = {}
    for name, module in model.named_modules():
        if ".parametrizations" in f".{name}":
            continue
        own = dict(module.named_parameters(recurse=False))
        own.update(module.named_buffers(recurse=False))
        if parametrize.is_parametrized(module):
            own.update({p: module.parametrizations[p].original for p in module.parametrizations})
        found.update({f"{name}.{k}": v.detach() for k, v in own.items() if v.is_floating_point()})
    return found


def masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.endswith(".mask")}


def test_rewind_takes_the_early_weights_of_exactly_the_kept_channels_and_blocks(teacher):
    model, stages = teacher
    # an "early teacher" whose every value is twice the teacher's: a rewound student must then
    # hold twice the inheriting student's values, whatever channels pruning kept
    early = {k: v * 2 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    inherit = build_student(model, stages, arch(stages, "inherit"), (X, Y)).model
    rewound = build_student(model, stages, arch(stages, "rewind"), (X, Y), early).model
    kept, back = raw_tensors(inherit), raw_tensors(rewound)
    assert kept.keys() == back.keys() and "layer2.0.conv1.weight" in kept
    for name, value in kept.items():
        torch.testing.assert_close(back[name], 2 * value, msg=name)
    assert masks(rewound).keys() == masks(inherit).keys() and masks(inherit)
    assert all(torch.equal(masks(rewound)[k], m) for k, m in masks(inherit).items())
    weight = rewound.layer2[0].conv1.weight  # masked, then quantized, over the new values
    assert torch.equal(
        weight == 0, masks(rewound)["layer2.0.conv1.parametrizations.weight.0.mask"] == 0
    )


def test_reinit_keeps_the_architecture_and_masks_with_fresh_values(teacher):
    model, stages = teacher
    inherit = build_student(model, stages, arch(stages, "inherit"), (X, Y)).model
    torch.manual_seed(1)
    fresh = build_student(model, stages, arch(stages, "reinit"), (X, Y)).model
    kept, new = raw_tensors(inherit), raw_tensors(fresh)
    assert {k: v.shape for k, v in kept.items()} == {k: v.shape for k, v in new.items()}
    assert not torch.equal(kept["layer3.0.conv2.weight"], new["layer3.0.conv2.weight"])
    assert torch.equal(
        new["layer1.0.bn1.running_var"], torch.ones_like(kept["layer1.0.bn1.running_var"])
    )
    assert all(torch.equal(masks(fresh)[k], m) for k, m in masks(inherit).items())
    torch.manual_seed(1)
    again = build_student(model, stages, arch(stages, "reinit"), (X, Y)).model
    assert all(torch.equal(raw_tensors(again)[k], v) for k, v in new.items())  # seeded


def test_rewind_without_an_early_point_names_what_to_do(teacher):
    model, stages = teacher
    with pytest.raises(ValueError, match="retrain the teacher") as error:
        build_student(model, stages, arch(stages, "rewind"), (X, Y))
    assert str(error.value) == NO_REWIND


def test_a_trial_context_rewinds_to_its_teacher_s_first_epoch(tiny):
    ctx = tiny.trial_context()
    stages = tiny.stages
    depth_only = Architecture.compose(
        {
            "depth": DepthParams(blocks=[s.num_blocks for s in stages]),
            "init": InitParams(init="rewind"),
        }
    )
    student = ctx.build(depth_only).model
    early = tiny.teacher.rewind_state()
    for name, value in student.state_dict().items():
        assert torch.equal(value, early[name]), name


def test_a_search_that_may_draw_rewind_is_refused_before_its_first_trial(tmp_path):
    """A teacher trained for one epoch keeps no early point: a search whose space allows
    `rewind` stops with the message before any trial (it would fail every such trial)."""
    raw = tiny_raw(tmp_path / "teachers", tmp_path / "run", budget=1)
    raw["teacher"]["epochs"] = 1
    raw["search_space"] = {"techniques": ["depth", "init"]}
    with pytest.raises(UserError) as error:
        run_search(validate_config(raw, "test"))
    assert str(error.value) == f"search_space.init allows rewind: {NO_REWIND}"
    assert not (tmp_path / "run" / "run.json").exists()
