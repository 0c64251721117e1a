"""Channel pruning with every registered criterion: channels physically removed, at once or
masked along an iterative schedule while the student trains and removed after."""

from __future__ import annotations

import itertools

import pytest
import timm
import torch
from torch.nn.utils import parametrize

from automl.compress._channel_schedule import current_masks
from automl.compress._criteria import SCORE, get_criterion, list_criteria
from automl.compress.channels import ChannelsParams, prune_channels
from automl.stages import find_stages
from automl.student.build import build_student, training_hooks
from automl.trial import run_trial
from search_spaces import Architecture

X = torch.randn(16, 1, 16, 16)
Y = torch.randint(0, 10, (16,))


@pytest.mark.parametrize("criterion", list_criteria())
def test_every_criterion_removes_channels_per_stage(criterion):
    model = timm.create_model("resnet18", in_chans=1, num_classes=10)
    stages = find_stages(model, X[:1])
    prune_channels(model, stages, [0.5, 0.5, 0.25, 1.0], criterion, (X, Y))
    assert model.layer1[0].conv1.out_channels == 32
    assert model.layer3[0].conv1.out_channels == 64
    assert model.layer4[0].conv1.out_channels == 512  # kept whole
    assert model.fc.out_features == 10 and model(X).shape == (16, 10)
    assert not any(hasattr(m, SCORE) for m in model.modules())  # what `prepare` left is gone


def test_unknown_criterion_lists_known_ones():
    with pytest.raises(ValueError, match=r"known: \['bn_scale'"):
        get_criterion("snip")


def iterative_student(criterion: str, keep: float = 0.5):
    model = timm.create_model("resnet18", in_chans=1, num_classes=10).eval()
    stages = find_stages(model, X[:1])
    params = ChannelsParams(
        channel_keep=[keep] * len(stages), criterion=criterion, channel_schedule="iterative"
    )
    arch = Architecture.compose({"channels": params})
    return build_student(model, stages, arch, (X, Y)), arch


@pytest.mark.parametrize("criterion", ["l2", "random"])
def test_an_iterative_schedule_masks_more_channels_at_each_update_and_never_unmasks(criterion):
    student, arch = iterative_student(criterion)
    assert all(int(m.sum()) == len(m) for m in current_masks(student.model).values())
    hook = training_hooks(student, arch)
    total, seen = 20, []
    for step in range(1, total + 1):
        hook(step, total)
        masked = {
            n: set(torch.nonzero(m == 0).flatten().tolist())
            for n, m in current_masks(student.model).items()
        }
        if not seen or masked != seen[-1]:
            seen.append(masked)
    assert len(seen) >= 4  # the first update masks some, later ones more
    for before, after in itertools.pairwise(seen):
        assert all(before[n] <= after[n] for n in before)  # random scores too: never unmasked
        assert sum(map(len, after.values())) > sum(map(len, before.values()))
    # the end: layer1's convolutions lose half, as one-shot pruning at 0.5 removes
    assert len(seen[-1]["layer1.0.conv1"]) == 32 and len(seen[-1]["layer3.0.conv2"]) == 128


def test_a_masked_channel_is_zero_wherever_it_is_written():
    student, arch = iterative_student("l2")
    hook = training_hooks(student, arch)
    for step in range(1, 5):
        hook(step, 4)
    outputs = {}
    handles = [
        student.model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: outputs.__setitem__(name, o)
        )
        for name in ("bn1", "layer2.0.bn1", "layer2.0.bn2", "layer2.0.downsample.1")
    ]
    with torch.no_grad():
        student.model(X)
    for h in handles:
        h.remove()
    masks = current_masks(student.model)
    for name, out in outputs.items():
        gone = masks[name] == 0
        assert gone.any() and (out[:, gone] == 0).all() and (out[:, ~gone] != 0).any()


def test_an_iterative_trial_measures_the_final_shapes_before_training(tiny):
    ctx = tiny.trial_context()
    results = {}
    for schedule in ("one_shot", "iterative"):
        params = ChannelsParams(
            channel_keep=[0.5] * len(ctx.stages), criterion="l2", channel_schedule=schedule
        )
        results[schedule], model = run_trial(Architecture.compose({"channels": params}), ctx, 0)
        assert not any(parametrize.is_parametrized(m) for m in model.modules())
    one_shot, iterative = results["one_shot"], results["iterative"]
    assert (iterative.macs, iterative.params) == (one_shot.macs, one_shot.params)
    assert iterative.size_bytes == one_shot.size_bytes
    assert iterative.params == sum(p.numel() for p in model.parameters())
    assert iterative.val_accuracy > 0.5  # it trained and was removed without breaking


def test_each_criterion_keeps_channels_of_its_own():
    """Every criterion chooses another set of channels on the same model (one that fell back
    to another's scores would choose the same), and bn_scale keeps exactly the channels of
    the largest BatchNorm scales. Channels are told apart by their BatchNorm scales, drawn
    distinct."""
    torch.manual_seed(0)
    base = timm.create_model("resnet18", in_chans=1, num_classes=10)
    with torch.no_grad():
        for m in base.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    scales = base.layer1[0].bn1.weight.detach()
    kept = {}
    for criterion in list_criteria():
        torch.manual_seed(1)
        model = timm.create_model("resnet18", in_chans=1, num_classes=10)
        model.load_state_dict(base.state_dict())
        prune_channels(model, find_stages(model, X[:1]), [0.5, 0.5, 0.25, 1.0], criterion, (X, Y))
        left = model.layer1[0].bn1.weight.detach()
        kept[criterion] = frozenset(int((scales == v).nonzero()[0]) for v in left)
        assert len(kept[criterion]) == 32
    assert len(set(kept.values())) == len(kept), kept
    assert kept["bn_scale"] == frozenset(scales.abs().topk(32).indices.tolist())
