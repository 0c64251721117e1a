"""Channel pruning with every registered criterion: channels physically removed."""

from __future__ import annotations

import pytest
import timm
import torch

from automl.compress._criteria import SCORE, get_criterion, list_criteria
from automl.compress.channels import prune_channels
from automl.stages import find_stages

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
