"""The local controller meets the controller contract (tests/controllers/contract.py). Its
SIGKILL clause runs as tests/run/test_crash_campaign.py, which kills an Optuna search at five
exact moments instead of one moment found by polling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.controllers.contract import (  # the contract's tests run here
    test_budget_counts_completed_trials_and_failures_are_recorded,  # noqa: F401
    test_early_stopping_stops_the_students_its_rule_ranks_low,  # noqa: F401
)

COVERED_ELSEWHERE = {
    "test_sigkill_then_resume_loses_and_repeats_no_trial": "tests/run/test_crash_campaign.py"
}


@pytest.fixture
def start_search():
    def start(config: Path | None, *args: str) -> subprocess.Popen:
        flags = ["--config", str(config)] if config is not None else []
        return subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "search", *flags, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    return start


@pytest.fixture
def check_backend():
    def check(run: Path) -> None:
        header = (run / "trials.csv").read_text().splitlines()[0].split(",")
        assert "node_id" not in header  # a column of the Ray controller only
        assert not (run / "ray").exists()

    return check
