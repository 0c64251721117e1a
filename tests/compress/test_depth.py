"""Depth by importance: which blocks of a stage go, chosen by the residual branch's norm or by
the change their removal makes, on a teacher with several droppable blocks per stage."""

from __future__ import annotations

import pytest
import torch

from automl.compress.depth import DepthParams, _branch_norms, blocks_to_drop
from automl.stages import find_stages
from automl.student.build import build_student, fold
from automl.student.files import load_student, save_student
from search_spaces import Architecture
from teachers.load import create_teacher

SIZE = (16, 16)


def _resnet34(seed: int, idle: tuple[str, int]) -> torch.nn.Module:
    """A random resnet34 whose every residual branch is open but `idle`'s (stage, block):
    timm starts each branch's last batch norm at zero, which makes a block pass its input on."""
    torch.manual_seed(seed)
    model = create_teacher("resnet34", 1, 10).eval()
    with torch.no_grad():
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in layer:
                block.bn2.weight.fill_(1.0)
        quiet = getattr(model, idle[0])[idle[1]].bn2
        quiet.weight.zero_()
        quiet.bias.zero_()
    return model


@pytest.fixture(scope="module")
def teacher():
    """A random resnet34 (3, 4, 6, 3 blocks) whose layer2 block 1 alone does nothing: its
    residual branch ends in a batch norm scaled to zero, so the block passes its
    (non-negative) input on unchanged."""
    model = _resnet34(seed=0, idle=("layer2", 1))
    stages = find_stages(model, torch.zeros(1, 1, *SIZE))
    return model, stages


def _build(teacher, choice: str):
    model, stages = teacher
    blocks = [s.num_blocks for s in stages]
    blocks[1] -= 1  # layer2 loses one of its droppable blocks 1, 2, 3
    arch = Architecture.compose({"depth": DepthParams(blocks=blocks, block_choice=choice)})
    x = torch.randn(8, 1, *SIZE)
    return arch, build_student(model, stages, arch, (x, torch.zeros(8, dtype=torch.long)))


@pytest.mark.parametrize("choice", ["norm", "sensitivity"])
def test_the_block_that_changes_nothing_is_the_one_dropped(teacher, choice):
    model, _ = teacher
    _, student = _build(teacher, choice)
    x = torch.randn(4, 1, *SIZE)
    with torch.no_grad():
        assert len(student.model.layer2) == 3
        assert torch.allclose(student.model(x), model(x), atol=1e-5)
        _, last = _build(teacher, "last")
        assert not torch.allclose(last.model(x), model(x), atol=1e-3)  # block 3 mattered


def test_a_student_that_kept_middle_blocks_saves_reloads_and_replays(teacher, tmp_path):
    arch, student = _build(teacher, "norm")
    fold(student.model)
    save_student(tmp_path / "s.safetensors", student.model, arch, {})
    again, _ = load_student(tmp_path / "s.safetensors", "resnet34", 1, 10, SIZE)
    x = torch.randn(4, 1, *SIZE)
    with torch.no_grad():
        assert torch.equal(again(x), student.model.eval()(x))
    # the replay cuts the same blocks from another teacher-shaped model: its layer2 holds
    # that model's blocks 0, 2 and 3
    other = create_teacher("resnet34", 1, 10)
    kept = [other.layer2[i] for i in (0, 2, 3)]
    for replay in student.replays:
        replay(other)
    assert list(other.layer2) == kept


def test_where_blocks_differ_only_sets_that_keep_the_skeleton_are_chosen(tmp_path):
    """layer3 (blocks 0 to 5) with block 2 of another structure and block 1 doing nothing:
    dropping block 1 would shift block 2 into block 1's place, which the skeleton of a saved
    student (its last block dropped) cannot hold, so a block from 3 to 5 goes instead."""
    model = _resnet34(seed=1, idle=("layer3", 1))
    model.layer3[2].conv1 = torch.nn.Conv2d(256, 256, 1, bias=False)
    stages = find_stages(model, torch.zeros(1, 1, *SIZE))
    keep = [s.num_blocks for s in stages]
    keep[2] -= 1
    x = torch.randn(8, 1, *SIZE)
    dropped = blocks_to_drop(model, stages, keep, "norm", x)
    assert len(dropped) == 1 and dropped[0].index in (3, 4, 5)
    # the least-changing of those that may go
    layer3 = [b for b in stages[2].blocks if b.index in (3, 4, 5)]
    norms = _branch_norms(model, layer3, x)
    assert dropped[0] == min(layer3, key=norms.get)
