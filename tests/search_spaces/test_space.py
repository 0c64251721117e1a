"""Search spaces composed from techniques: every preset samples architectures that build and
run (hypothesis reaches the corners), fixed and narrowed dimensions, shared stages, binding to
a teacher, and checks that stay cheap on huge ranges."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.stages import find_stages
from automl.student.build import build_student
from search_spaces import (
    SEARCH_SPACES,
    Architecture,
    FixedDim,
    SearchSpaceConfig,
    create_search_space,
    list_search_spaces,
)


class HypothesisSuggester:
    """Draws every dimension from hypothesis, so examples reach the corners of the space."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def suggest_float(self, name, low, high, *, step=None, log=False):
        if step is None:
            return self.data.draw(st.floats(low, high), label=name)
        n = round((high - low) / step)
        return low + step * self.data.draw(st.integers(0, n), label=name)

    def suggest_int(self, name, low, high, *, step=1):
        return self.data.draw(st.integers(low, high), label=name)

    def suggest_categorical(self, name, choices):
        return self.data.draw(st.sampled_from(choices), label=name)


TEACHERS = {
    name: timm.create_model(name, in_chans=1, num_classes=10).eval()
    for name in ("resnet18", "mobilenetv3_small_050")
}
X = torch.randn(8, 1, 16, 16)
Y = torch.randint(0, 10, (8,))


@pytest.mark.parametrize("preset", list_search_spaces())
@pytest.mark.parametrize("name", sorted(TEACHERS))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_preset_samples_architectures_that_build_and_run(name, preset, data):
    teacher = TEACHERS[name]
    stages = find_stages(teacher, X[:1])
    space = create_search_space(preset)
    arch = space.bind(stages).sample(HypothesisSuggester(data))
    assert arch.techniques == space.techniques
    student = build_student(teacher, stages, arch, (X, Y))
    out = student.model(X)
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    n_teacher = sum(p.numel() for p in teacher.parameters())
    assert sum(p.numel() for p in student.model.parameters()) <= n_teacher


def test_registry_lists_presets_and_rejects_unknown_names():
    assert list_search_spaces() == sorted(SEARCH_SPACES) == ["pruning", "stagewise", "uniform"]
    assert list_search_spaces("uni*") == ["uniform"]
    with pytest.raises(ValueError, match="registered"):
        create_search_space("nas")


def test_the_pruning_preset_leaves_weights_unquantized():
    space = create_search_space("pruning")
    assert space.techniques == ("depth", "channels") and "bits" not in space.dimensions


def _sample(config: SearchSpaceConfig) -> tuple[Architecture, dict[str, Any]]:
    stages = find_stages(TEACHERS["resnet18"], X[:1])
    trial = optuna.create_study().ask()
    return config.bind(stages).sample(trial), trial.params


def test_fixed_and_narrowed_dimensions_are_not_searched():
    config = create_search_space(
        "stagewise",
        bits=8,
        criterion="taylor",
        channel_keep={"type": "float", "low": 0.5, "high": 0.5},
        blocks=[2, 1, {"type": "int"}, 2],
    )
    arch, params = _sample(config)
    assert (
        all(s["bits"] == 8 for s in arch.stages) and arch.params("channels").criterion == "taylor"
    )
    assert not any(k.endswith(".bits") for k in params) and "criterion" not in params
    assert [s["blocks"] for s in arch.stages][:2] == [2, 1] and arch.stages[3]["blocks"] == 2
    assert {k for k in params if k.endswith(".blocks")} == {"stage2.blocks"}


def test_uniform_space_shares_one_value_across_stages_but_not_blocks():
    arch, params = _sample(create_search_space("uniform"))
    assert "all.channel_keep" in params and "stage0.channel_keep" not in params
    assert "all.bits" in params and "stage1.blocks" in params and "all.blocks" not in params
    assert len({s["channel_keep"] for s in arch.stages}) == 1


def test_binding_checks_each_stage_against_the_teacher():
    stages = find_stages(TEACHERS["resnet18"], X[:1])
    with pytest.raises(ValueError, match=r"stage 1 \(layer2\) allows 1 to 2, got \[3\]"):
        create_search_space(blocks=[1, 3, 1, 1]).bind(stages)
    with pytest.raises(ValueError, match="4 stages, the list has 2"):
        create_search_space(bits=[8, 8]).bind(stages)


def test_an_enqueued_trial_samples_the_fixed_values_and_draws_the_rest():
    stages = find_stages(TEACHERS["resnet18"], X[:1])
    space = create_search_space(bits=[8, 8, {"type": "choice", "values": [4, 8]}, 4]).bind(stages)
    fixed = space.fixed_params(
        {
            "blocks": "low",
            "channel_keep": [0.25, 1, "high", "low"],
            "bits": [8, 8, 4, 4],
            "kd_alpha": "high",
        }
    )
    assert fixed["stage0.blocks"] == 1 and fixed["stage3.channel_keep"] == 0.25
    assert fixed["stage1.channel_keep"] == fixed["stage2.channel_keep"] == 1.0
    assert "stage0.bits" not in fixed and fixed["stage2.bits"] == 4  # fixed dims are not asked
    study = optuna.create_study()
    study.enqueue_trial(fixed)
    trial = study.ask()
    arch = space.sample(trial)
    assert [s["blocks"] for s in arch.stages] == [1, 1, 1, 1] and arch.kd_alpha == 1.0
    assert [s["channel_keep"] for s in arch.stages] == [0.25, 1.0, 1.0, 0.25]
    assert [s["bits"] for s in arch.stages] == [8, 8, 4, 4]
    assert set(trial.params) - set(fixed) == {"criterion", "kd_temperature"}  # drawn

    shared = create_search_space("uniform").bind(stages)
    assert shared.fixed_params({"channel_keep": 0.5}) == {"all.channel_keep": 0.5}
    with pytest.raises(ValueError, match="the stages share one value"):
        shared.fixed_params({"channel_keep": [0.5, 0.5, 0.25, 0.5]})


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"blocks": 3}, r"blocks \(stage 0, layer1\): 3 is not allowed; the dimension is 1..2"),
        ({"channel_keep": 0.3}, "0.3 is not allowed; the dimension is 0.25..1 step 0.125"),
        ({"bits": 5}, "5 is not allowed; the dimension is 4|6|8|32"),
        ({"bits": [8, 8]}, "the teacher has 4 stages, the list has 2"),
        ({"criterion": "hessian"}, "criterion: 'hessian' is not allowed"),
        ({"stem_head_bits": 4}, "stem_head_bits: 4 is not allowed; the dimension is 8"),
        ({"width": 2}, "width: no dimension of the search space; allowed: channel_keep, blocks,"),
    ],
)
def test_enqueued_values_outside_the_space_name_the_field(values, needle):
    space = create_search_space().bind(find_stages(TEACHERS["resnet18"], X[:1]))
    with pytest.raises(ValueError, match=needle):
        space.fixed_params(values)


def test_checks_of_a_huge_range_stay_cheap():
    # A range of three billion values is checked at its ends, not enumerated.
    stages = find_stages(TEACHERS["resnet18"], X[:1])
    config = create_search_space(blocks={"type": "int", "low": 1, "high": 3_000_000_000})
    with pytest.raises(ValueError, match="got \\[3000000000\\]"):
        config.bind(stages)
    fine = create_search_space(channel_keep={"type": "float", "low": 0.5, "high": 1, "step": 1e-6})
    dim = fine.dimensions["channel_keep"]
    assert (dim.low, dim.high, dim.step) == (0.5, 1.0, 1e-6)  # half a million values, kept
    # past a million values a step is refused, not enumerated (Optuna's exact grid arithmetic
    # fails on a step of 1e-300)
    with pytest.raises(ValueError, match="step 1e-09 makes more than 1,000,000 values"):
        create_search_space(channel_keep={"type": "float", "low": 0.5, "high": 1, "step": 1e-9})


def test_a_plain_value_in_yaml_means_fixed_and_the_dump_is_flat():
    config = SearchSpaceConfig.model_validate({"bits": 6})
    assert config.dimensions["bits"] == FixedDim(value=6)
    dumped = config.model_dump(mode="json")
    assert dumped["bits"] == {"type": "fixed", "value": 6} and "dimensions" not in dumped
    assert SearchSpaceConfig.model_validate(dumped) == config


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (
            {"techniques": ["depth", "channels"], "bits": 8},
            "technique 'weight_quant', which is not enabled",
        ),
        ({"bitz": 8}, "bitz: unknown key; allowed: act_bits, bits, block_choice, blocks"),
        ({"techniques": ["depth", "prune"]}, "unknown technique(s) ['prune']"),
        ({"techniques": ["depth", "depth"]}, "listed twice"),
        ({"criterion": "l2", "stem_head_bits": [8, 8]}, "not a list"),
        ({"blocks": {"type": "float", "low": 1, "high": 2}}, "blocks: 1.0 is not allowed"),
        ({"kd_alpha": 2}, "kd_alpha: 2 is not allowed"),
    ],
)
def test_bad_spaces_name_the_problem(raw, needle):
    with pytest.raises(ValueError) as info:
        SearchSpaceConfig.model_validate(raw)
    assert needle in str(info.value)
