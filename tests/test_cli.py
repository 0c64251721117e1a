"""The CLI as a user meets it: real processes, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_raw, write_config

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "raw_update", "needle"),
    [
        (["--budget", "0"], {}, "search.budget: Input should be greater than or equal to 1"),
        ([], {"teacher": {"model": "resnet19"}}, "unknown timm model 'resnet19'"),
        ([], {"search": {"budgett": 1}}, "search.budgett: unknown key"),
        (["--sampler", "grid"], {}, "search.sampler"),
        ([], {"teacher": {"checkpoint": "/no/such/file.pt"}}, "file not found"),
    ],
)
def test_bad_input_is_one_message_and_exit_2(tmp_path, teacher_cache, args, raw_update, needle):
    raw = tiny_raw(teacher_cache, tmp_path / "run")
    for section, values in raw_update.items():
        raw[section] = {**raw.get(section, {}), **values}
    result = cli("search", "--config", str(write_config(tmp_path / "c.yaml", raw)), *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_config_file_and_resume_without_run(tmp_path):
    result = cli("search", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "config file not found" in result.stderr
    result = cli("search", "--resume", "--out", str(tmp_path / "empty"))
    assert result.returncode == 2 and "no run to resume" in result.stderr


def test_teacher_command_shows_the_cached_card(tiny, teacher_cache, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache))
    result = cli("teacher", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert card["model"] == "resnet18" and card["fingerprint"] == tiny[2].card.fingerprint
