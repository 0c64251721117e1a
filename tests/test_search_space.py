from __future__ import annotations

from typing import Any

import optuna
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.candidate import build_student
from automl.stages import find_stages
from search_spaces import (
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


@pytest.mark.parametrize("name", sorted(TEACHERS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_sampled_architecture_builds_and_runs_forward(name, data):
    teacher = TEACHERS[name]
    stages = find_stages(teacher, X[:1])
    arch = create_search_space("stagewise").bind(stages).sample(HypothesisSuggester(data))
    student = build_student(teacher, stages, arch, (X, Y))
    out = student.model(X)
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    n_teacher = sum(p.numel() for p in teacher.parameters())
    n_student = sum(p.numel() for p in student.model.parameters())
    assert n_student <= n_teacher


def test_registry_lists_presets_and_rejects_unknown_names():
    assert list_search_spaces() == ["pruning", "stagewise", "uniform"]
    assert list_search_spaces("uni*") == ["uniform"]
    with pytest.raises(ValueError, match="registered"):
        create_search_space("nas")


def _params(config: SearchSpaceConfig) -> tuple[Architecture, dict[str, Any]]:
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
    arch, params = _params(config)
    assert all(s.bits == 8 for s in arch.stages) and arch.criterion == "taylor"
    assert not any(k.endswith(".bits") for k in params) and "criterion" not in params
    assert [s.blocks for s in arch.stages][:2] == [2, 1] and arch.stages[3].blocks == 2
    assert set(k for k in params if k.endswith(".blocks")) == {"stage2.blocks"}


def test_uniform_space_shares_one_value_across_stages():
    arch, params = _params(create_search_space("uniform"))
    assert "all.channel_keep" in params and "stage0.channel_keep" not in params
    assert len({s.channel_keep for s in arch.stages}) == 1


def test_binding_checks_blocks_and_list_lengths_against_the_teacher():
    stages = find_stages(TEACHERS["resnet18"], X[:1])
    with pytest.raises(ValueError, match=r"stage 1 \(layer2\) keeps between 1 and 2 blocks"):
        create_search_space(blocks=[1, 3, 1, 1]).bind(stages)
    with pytest.raises(ValueError, match="4 stages, the list has 2"):
        create_search_space(bits=[8, 8]).bind(stages)


def test_a_plain_value_in_yaml_means_fixed():
    config = SearchSpaceConfig.model_validate({"bits": 6})
    assert config.bits == FixedDim(value=6)
