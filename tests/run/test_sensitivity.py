"""Sensitivity scan: one stage pruned or one block dropped at a time, scored against the teacher,
cached beside it with a plot; the narrowing of a search space it drives; the command."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from automl.compress.channels import ChannelsParams
from automl.run import sensitivity as sens
from automl.run.sensitivity import BlockPoint, ChannelPoint, SensitivityScan, narrow
from automl.stages import drop_blocks
from automl.training import accuracy
from search_spaces import Architecture
from search_spaces.dimensions import FloatDim, IntDim
from search_spaces.space import SearchSpaceConfig
from tests.conftest import cli_in_process, tiny_raw, write_config

KEEPS = [0.5, 0.125]


@pytest.fixture(scope="module")
def scanned(tiny):
    return sens.sensitivity(tiny, "l2", 0, KEEPS)


def _val(model, tiny) -> float:
    with torch.no_grad():
        return accuracy(model.eval(), tiny.data.val, torch.device("cpu"))


def test_each_change_is_scored_alone_against_the_teacher(scanned, tiny):
    scan, _ = scanned
    stages = tiny.stages
    assert scan.keeps == KEEPS and scan.epochs == 0 and scan.criterion == "l2"
    assert scan.teacher_val_accuracy == _val(copy.deepcopy(tiny.teacher.model), tiny)
    assert [(p.stage, p.keep) for p in scan.channels] == [
        (s.index, k) for s in stages for k in KEEPS
    ]
    removable = [(s.index, b) for s in stages for b in s.blocks if b.removable]
    assert [(p.stage, p.block) for p in scan.blocks] == [
        (i, f"{b.seq_path}.{b.index}") for i, b in removable
    ]
    for p in [*scan.channels, *scan.blocks]:
        assert p.drop == pytest.approx(scan.teacher_val_accuracy - p.val_accuracy, abs=1e-6)
    # one point redone by hand: the third stage at 1/8 of its channels, the others whole
    point = next(p for p in scan.channels if p.stage == 2 and p.keep == 0.125)
    keep = [0.125 if s.index == 2 else 1.0 for s in stages]
    arch = Architecture.compose({"channels": ChannelsParams(channel_keep=keep, criterion="l2")})
    assert _val(tiny.trial_context().build(arch).model, tiny) == point.val_accuracy
    # and one block
    _, block = removable[-1]
    model = copy.deepcopy(tiny.teacher.model)
    drop_blocks(model, [block])
    assert _val(model, tiny) == scan.blocks[-1].val_accuracy
    # cutting a stage to 1/8 of its channels without training costs accuracy somewhere
    assert max(p.drop for p in scan.channels if p.keep == 0.125) > 0.05


def test_the_scan_is_cached_beside_the_teacher_with_its_plot(scanned, tiny, monkeypatch):
    scan, path = scanned
    assert path.parent == tiny.teacher.cache_dir and path.suffix == ".json"
    assert SensitivityScan.model_validate_json(path.read_text()) == scan
    assert "plotly" in path.with_suffix(".html").read_text()

    def no_rescan(*args):
        raise AssertionError("a cached scan was computed again")

    monkeypatch.setattr(sens, "run_scan", no_rescan)
    again, again_path = sens.sensitivity(tiny, "l2", 0, list(reversed(KEEPS)))
    assert again == scan and again_path == path
    # other settings are another scan
    assert sens.scan_path(tiny, "l1", 0, KEEPS) != path
    assert sens.scan_path(tiny, "l2", 1, KEEPS) != path


def _scan(tiny, channel_drops: dict[int, dict[float, float]], block_drops: dict[int, float]):
    stages = tiny.stages
    return SensitivityScan(
        teacher="resnet18",
        teacher_fingerprint="f",
        teacher_val_accuracy=0.9,
        criterion="l2",
        epochs=0,
        keeps=[0.875, 0.75, 0.5],
        channels=[
            ChannelPoint(stage=i, name=stages[i].name, keep=k, val_accuracy=0.9 - d, drop=d)
            for i, drops in channel_drops.items()
            for k, d in drops.items()
        ],
        blocks=[
            BlockPoint(
                stage=i,
                name=stages[i].name,
                block=f"{stages[i].blocks[-1].seq_path}.{stages[i].blocks[-1].index}",
                position=stages[i].num_blocks - 1,
                val_accuracy=0.9 - d,
                drop=d,
            )
            for i, d in block_drops.items()
        ],
        seconds=1.0,
    )


SCAN = (
    {
        0: {0.875: 0.001, 0.75: 0.005, 0.5: 0.02},  # from 0.75 up
        1: {0.875: 0.0, 0.75: 0.0, 0.5: 0.0},  # every scanned one: no limit, 0.25 stays
        2: {0.875: 0.05, 0.75: 0.0, 0.5: 0.0},  # the mildest already too dear: 1.0 only
        3: {0.875: 0.0, 0.75: 0.02, 0.5: 0.0},  # a larger fraction fails: 0.5 does not count
    },
    {0: 0.001, 1: 0.03, 2: 0.0, 3: 0.0},
)


def test_narrowing_raises_each_stage_s_lowest_channels_and_blocks(tiny):
    space = SearchSpaceConfig().bind(tiny.stages)
    before = copy.deepcopy(space.stage_dims)
    lines = narrow(space, _scan(tiny, *SCAN), max_drop=0.01)
    keeps = [d["channel_keep"] for d in space.stage_dims]
    assert keeps[0] == FloatDim(low=0.75, high=1.0, step=0.125)
    assert keeps[1] == before[1]["channel_keep"]  # 0.25..1 allowed already
    assert keeps[2] == FloatDim(low=1.0, high=1.0, step=0.125)
    assert keeps[3] == FloatDim(low=0.875, high=1.0, step=0.125)
    blocks = [d["blocks"] for d in space.stage_dims]
    n = tiny.stages[1].num_blocks
    assert blocks[1] == IntDim(low=n, high=n)  # its last block costs 3 points
    assert [b for i, b in enumerate(blocks) if i != 1] == [
        d["blocks"] for i, d in enumerate(before) if i != 1
    ]
    assert len(lines) == 4 and lines[0].startswith(f"{tiny.stages[0].name}.channel_keep")
    # every sampled architecture stays inside the narrowed ranges
    arch = space.sample(_Lowest())
    assert [s["channel_keep"] for s in arch.stages] == [0.75, 0.25, 1.0, 0.875]


def test_stages_that_share_channel_keep_take_the_strictest_low(tiny):
    space = SearchSpaceConfig(shared_stages=True).bind(tiny.stages)
    narrow(space, _scan(tiny, *SCAN), max_drop=0.01)
    assert {d["channel_keep"].low for d in space.stage_dims} == {1.0}


class _Lowest:
    """A suggester that always takes the low end."""

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return low

    def suggest_int(self, name, low, high, *, step=1):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]


def test_the_command_prints_the_drops_and_refuses_bad_settings(scanned, tmp_path, teacher_cache):
    config = write_config(tmp_path / "tiny.yaml", tiny_raw(teacher_cache))
    result = cli_in_process("sensitivity", "--config", config, "--keep", "0.5", "--keep", "0.125")
    assert result.exit_code == 0, result.output
    assert "keep 0.125" in result.stdout and "saved" in result.stdout
    bad = cli_in_process("sensitivity", "--config", config, "--criterion", "snip")
    assert bad.exit_code == 2 and "unknown pruning criterion 'snip'" in bad.stderr, bad.output
    assert "l2" in bad.stderr  # the allowed criteria are named
    bad = cli_in_process("sensitivity", "--config", config, "--keep", "1.5")
    assert bad.exit_code == 2 and "strictly between 0 and 1" in bad.stderr, bad.output


def test_a_search_narrowed_by_sensitivity_records_its_ranges(
    scanned, tiny, teacher_cache, tmp_path, monkeypatch
):
    from automl.config import validate_config
    from automl.run.search import run_search

    monkeypatch.setattr(sens, "KEEPS", tuple(KEEPS))  # the scan already cached: no rescan
    monkeypatch.setattr(sens, "run_scan", None)
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=1)
    raw["search_space"] = {"sensitivity_max_drop": 0.02}
    run_search(validate_config(raw, "test"))
    stages = json.loads((tmp_path / "run" / "run.json").read_text())["stages"]
    scan, _ = scanned
    space = SearchSpaceConfig().bind(tiny.stages)
    narrow(space, scan, 0.02)
    assert [s["channel_keep"] for s in stages] == [
        d["channel_keep"].describe() for d in space.stage_dims
    ]
    # on the tiny teacher, cutting some stage to an eighth costs more than 2 points
    assert any(not s["channel_keep"].startswith("0.25..") for s in stages)
