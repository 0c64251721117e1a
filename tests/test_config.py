from __future__ import annotations

from pathlib import Path

import pytest

from automl.config import DEFAULT_CONFIG, ExperimentConfig, load_config, validate_config
from automl.errors import UserError

CONFIGS = sorted(Path(DEFAULT_CONFIG).parent.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip_through_json(path):
    config = load_config(path)
    again = ExperimentConfig.model_validate_json(config.model_dump_json())
    assert again == config


def test_default_config_is_digits_resnet18_budget_100():
    config = load_config()
    assert (config.data.type, config.teacher.model, config.search.budget) == (
        "digits",
        "resnet18",
        100,
    )


def test_overrides_win_over_the_file():
    config = load_config(
        None,
        {
            "search.budget": 7,
            "training.epochs": 2,
            "seed": 5,
            "search.sampler": "nsga2",
            "name": "x",
            "out": "/tmp/x",
        },
    )
    assert config.search.budget == 7 and config.training.epochs == 2 and config.seed == 5
    assert config.search.sampler == "nsga2" and config.run_dir == Path("/tmp/x")


def test_none_overrides_leave_the_file_value():
    assert load_config(None, {"search.budget": None}).search.budget == 100


def test_unknown_key_names_field_and_allowed_keys():
    with pytest.raises(UserError) as info:
        validate_config({"search": {"budgett": 3}}, "test")
    message = str(info.value)
    assert "search.budgett: unknown key" in message
    assert "budget" in message and "sampler" in message


def test_unknown_key_inside_tagged_data_section_lists_that_sections_keys():
    with pytest.raises(UserError) as info:
        validate_config({"data": {"type": "digits", "colour": 1}}, "test")
    assert "data.colour: unknown key; allowed:" in str(info.value)
    assert "image_size" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"search": {"budget": 0}}, "search.budget: Input should be greater than or equal to 1"),
        ({"search": {"sampler": "grid"}}, "search.sampler: unknown sampler 'grid'; registered:"),
        ({"search": {"backend": "k8s"}}, "search.backend: unknown backend 'k8s'; registered:"),
        (
            {"search": {"early_stop": "hyperband"}},
            "search.early_stop: Input should be 'none', 'asha' or 'mo_asha'",
        ),
        (
            {"search": {"early_stop": "mo_asha"}, "training": {"epochs": 1}},
            "compares trials after epoch 1, 2, ... below the last, and training.epochs is 1",
        ),
        (
            {"search": {"early_stop": "mo_asha"}, "ray": {"early_stop": "asha"}},
            "ray.early_stop: asha and search.early_stop: mo_asha both stop trials early",
        ),
        ({"ray": {"early_stop": "mo_asha"}}, "early stopping is search.early_stop now"),
        ({"search": {"reduction_factor": 1}}, "search.reduction_factor: Input should be greater"),
        ({"latency": {"repeats": 5}}, "latency.repeats"),
        ({"data": {"type": "mnist"}}, "data"),
        ({"data": {"val_fraction": 0.5, "test_fraction": 0.45}}, "val_fraction + test_fraction"),
        (
            {"search_space": {"bits": {"type": "choice", "values": [1, 64]}}},
            "search_space.bits: 1 is",
        ),
        (
            {"search_space": {"sensitivity_max_drop": 2}},
            "search_space.sensitivity_max_drop: Input should be less than 1",
        ),
        (
            {"search_space": {"sensitivity_criterion": "snip"}},
            "search_space.sensitivity_criterion: unknown pruning criterion 'snip'; known:",
        ),
        ({"search_space": {"name": "huge"}}, "registered: ['pruning', 'stagewise', 'uniform']"),
        (
            {"search_space": {"criterion": "snip"}},
            "search_space.criterion: 'snip' is not allowed (unknown pruning criterion",
        ),
        (
            {"search_space": {"bitz": 3}},
            "search_space.bitz: unknown key; allowed: act_bits, bits, block_choice, blocks",
        ),
        ({"plugins": ["no.such.module"]}, "plugins: cannot import 'no.such.module'"),
        (
            {"search": {"enqueue": [{"blocks": "low"}, {"chanel_keep": 0.5}]}},
            "search.enqueue.1: chanel_keep is no dimension of the search space; allowed: blocks",
        ),
    ],
)
def test_bad_values_name_the_field(raw, needle):
    with pytest.raises(UserError) as info:
        validate_config(raw, "test")
    assert needle in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3")
    with pytest.raises(UserError, match="must be a mapping"):
        load_config(scalar)


def test_ray_early_stop_of_old_configs_reads_as_search_early_stop():
    """Tune's own ASHA (eta 2) became search.early_stop: asha, for both backends."""
    old = validate_config({"ray": {"early_stop": "asha"}, "training": {"epochs": 3}}, "old")
    assert (old.search.early_stop, old.search.reduction_factor) == ("asha", 2)
    assert "early_stop" not in old.ray.model_dump()
    none = validate_config({"ray": {"early_stop": "none"}}, "old")
    assert none.search.early_stop == "none" and none.search.reduction_factor == 3
