"""Architectures: values validated by their techniques, the flat form of trials.csv, the
format of files written before techniques were plugins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from automl.compress.channels import ChannelsParams
from automl.compress.weight_quant import WeightQuantParams
from search_spaces import Architecture
from tests.conftest import make_arch


def test_values_are_validated_and_typed_by_their_technique():
    arch = make_arch([1, 0.5], [1, 2], [8, 4], criterion="taylor")
    assert arch.techniques == ("depth", "channels", "weight_quant")  # the order applied
    assert arch.stages[0] == {"channel_keep": 1.0, "blocks": 1, "bits": 8}
    assert isinstance(arch.stages[0]["channel_keep"], float)
    quant = arch.params("weight_quant")
    assert isinstance(quant, WeightQuantParams) and quant.bits == [8, 4]
    with pytest.raises(ValueError, match="not enabled"):
        Architecture.compose({"channels": ChannelsParams(channel_keep=[1.0])}).params("depth")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"stages": [{"channel_keep": 0, "blocks": 1, "bits": 8}]}, "greater than 0"),
        (
            {"stages": [{"channel_keep": 1, "blocks": 1, "bits": 8, "width": 2}]},
            "unknown value(s) ['width']",
        ),
        ({"stages": [{"channel_keep": 1, "blocks": 1}]}, "bits"),
        ({"sparsity": 0.5}, "unknown value(s) ['sparsity']"),
        ({"techniques": ["depth", "prune"]}, "unknown compression technique 'prune'"),
        ({"criterion": "snip"}, "unknown pruning criterion"),
    ],
)
def test_bad_values_name_the_problem(change, needle):
    raw = {**make_arch([1], [1], [8]).model_dump(mode="json"), **change}
    with pytest.raises(ValidationError) as info:
        Architecture.model_validate(raw)
    assert needle in str(info.value)


def test_flat_round_trip_and_the_format_before_plugins():
    arch = make_arch([1, 0.5], [1, 2], [8, 4], kd_temperature=3.0, kd_alpha=0.5)
    flat = arch.flat()
    assert flat["stage1.channel_keep"] == 0.5 and flat["stem_head_bits"] == 8
    assert flat["kd_alpha"] == 0.5 and "techniques" not in flat
    assert Architecture.from_flat(flat) == arch
    legacy = {  # an Architecture file of format 1: no techniques, global values at the top
        "stages": [{"channel_keep": 0.5, "blocks": 1, "bits": 6}],
        "stem_head_bits": 8,
        "criterion": "l2",
        "kd_temperature": 4.0,
        "kd_alpha": 0.7,
    }
    assert Architecture.model_validate(legacy).techniques == ("depth", "channels", "weight_quant")


def test_compose_joins_chosen_techniques():
    arch = Architecture.compose(
        {
            "weight_quant": WeightQuantParams(bits=[4, 8], stem_head_bits=8),
            "channels": ChannelsParams(channel_keep=[1.0, 0.5]),
        },
        kd_alpha=0.2,
    )
    assert arch.techniques == ("channels", "weight_quant") and arch.kd_alpha == 0.2
    assert arch.stages[1] == {"channel_keep": 0.5, "bits": 8}
    with pytest.raises(ValueError, match="one length"):
        Architecture.compose(
            {
                "weight_quant": WeightQuantParams(bits=[4]),
                "channels": ChannelsParams(channel_keep=[1.0, 0.5]),
            }
        )
