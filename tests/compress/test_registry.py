"""The technique registry: names, the rules `register_technique` enforces, the order of
application, and the errors a wrong name gets."""

from __future__ import annotations

from typing import Any

import pytest

from automl.compress import (
    LEGACY_TECHNIQUES,
    DeployForm,
    PerStage,
    Technique,
    TechniqueParams,
    get_technique,
    list_techniques,
    owner_of,
    register_technique,
    techniques_in_order,
)


def test_built_in_techniques_are_registered_and_listed_by_pattern():
    assert set(LEGACY_TECHNIQUES) <= set(list_techniques())
    assert list_techniques("weight_*") == ["weight_quant"]
    assert owner_of("channel_keep").name == "channels" and owner_of("nope") is None


def test_techniques_apply_in_pipeline_order_whatever_the_list_says():
    names = [t.name for t in techniques_in_order(["weight_quant", "channels", "depth"])]
    assert names == ["depth", "channels", "weight_quant"]


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown compression technique 'prune'; registered: \["):
        get_technique("prune")


def _technique(name: str, fields: dict[str, Any], space: dict[str, Any]) -> type[Technique]:
    params = type(f"{name}Params", (TechniqueParams,), {"__annotations__": fields})

    class Made(Technique):
        Params = params

        def apply(self, student, params, ctx) -> None: ...
        def deploy_form(self, params) -> DeployForm:
            return DeployForm()

        def describe(self, params) -> dict[str, str]:
            return {}

        def ladder(self, stages) -> list[Any]:
            return []

    Made.name, Made.order, Made.space = name, 50, space
    Made.__qualname__ = f"Made_{name}"
    return Made


def test_registration_refuses_clashes_and_missing_defaults():
    with pytest.raises(ValueError, match="belong to 'weight_quant' already"):
        register_technique(_technique("other_bits", {"bits": PerStage[int]}, {"bits": 8}))
    with pytest.raises(ValueError, match="no default dimension in `space`"):
        register_technique(_technique("no_space", {"width": PerStage[int]}, {}))
    with pytest.raises(
        ValueError, match=r"'channels' is registered already, by automl\.compress\.channels"
    ):
        register_technique(_technique("channels", {"x": int}, {"x": 1}))
    assert "other_bits" not in list_techniques() and "no_space" not in list_techniques()
