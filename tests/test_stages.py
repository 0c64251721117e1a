from __future__ import annotations

import pytest
import timm
import torch

from automl.stages import drop_blocks, find_stages, stage_of_modules

X = torch.randn(1, 1, 32, 32)


@pytest.mark.parametrize(
    ("name", "blocks", "min_blocks"),
    [
        ("resnet18", [2, 2, 2, 2], [1, 1, 1, 1]),
        ("mobilenetv3_small_050", [1, 2, 5, 4], [1, 1, 2, 2]),
        ("convnext_atto", [2, 2, 6, 2], [1, 1, 1, 1]),
    ],
)
def test_stages_follow_feature_info_in_each_family(name, blocks, min_blocks):
    model = timm.create_model(name, in_chans=1, num_classes=10)
    stages = find_stages(model, X)
    assert [s.num_blocks for s in stages] == blocks
    assert [s.min_blocks for s in stages] == min_blocks
    assert [s.channels for s in stages] == [
        e["num_chs"] for e in model.feature_info if e["module"] in {s.name for s in stages}
    ]


def test_resnet_stem_joins_the_first_stage_and_head_maps_to_the_last():
    model = timm.create_model("resnet18", in_chans=1, num_classes=10)
    stages = find_stages(model, X)
    assert stages[0].module_paths == ("act1", "layer1")
    owner = stage_of_modules(model, stages)
    assert owner["conv1"] == 0 and owner["fc"] == 3 and owner["layer3.1.conv2"] == 2


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_050", "convnext_atto"])
def test_dropping_every_removable_block_leaves_a_working_model(name):
    model = timm.create_model(name, in_chans=1, num_classes=10).eval()
    stages = find_stages(model, X)
    before = sum(p.numel() for p in model.parameters())
    drop_blocks(model, [b for s in stages for b in s.blocks_to_drop(s.min_blocks)])
    assert model(X).shape == (1, 10)
    assert sum(p.numel() for p in model.parameters()) < before
    assert [s.num_blocks for s in find_stages(model, X)] == [s.min_blocks for s in stages]


def test_blocks_out_of_range_are_rejected():
    stage = find_stages(timm.create_model("resnet18", in_chans=1, num_classes=10), X)[0]
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        stage.blocks_to_drop(3)
