"""A search sized in time: durations as users write them, the rule that starts a trial only
while it can end in time (finalize's share kept), and a real search stopped by it."""

from __future__ import annotations

import json
import time

import pytest

from automl.config import validate_config
from automl.controllers.time_budget import TimeBudget, parse_duration
from automl.errors import UserError
from automl.run.search import resume_config, run_search, time_budget
from tests.conftest import tiny_raw


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(90, 90.0), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1.5h", 5400.0)],
)
def test_durations_read_as_seconds(given, seconds):
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["30 minutes", "-1", "0", "h", True, "1e9999", "2d"])
def test_what_is_no_duration_is_refused(given):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(given)


def test_the_config_takes_a_duration_and_names_a_bad_one(teacher_cache):
    raw = tiny_raw(teacher_cache, time_budget="30m")
    assert validate_config(raw, "t").search.time_budget == 1800.0
    with pytest.raises(UserError, match=r"search.time_budget: .*'half an hour' is no duration"):
        validate_config(tiny_raw(teacher_cache, time_budget="half an hour"), "t")


def test_a_trial_starts_only_when_it_and_finalize_fit():
    ago = time.perf_counter() - 50  # this session began 50 s ago
    budget = TimeBudget(100, started=ago)
    assert budget.allows()  # nothing known of a trial: start one
    budget.record(20)
    budget.record(30)  # median 25: 50 + 25 <= 100
    assert budget.allows() and not budget.stopped
    reserved = TimeBudget(100, finalize_trials=2, fidelity=0.5, started=ago, durations=[25])
    assert not reserved.allows()  # 50 + 25 + 2 * 25 * 0.5 > 100
    assert reserved.stopped.startswith("time budget: 50 s of 100 s used; the next trial")
    assert "finalize about 25 s: no more trials start" in reserved.stopped
    resumed = TimeBudget(100, spent_before=99, started=time.perf_counter() - 2)
    assert not resumed.allows() and "used before a trial" in resumed.stopped
    assert TimeBudget(None, spent_before=1e9).allows()


def test_finalizes_share_scales_with_its_fidelity(teacher_cache):
    raw = tiny_raw(teacher_cache, time_budget=600)
    raw["training"] = {"epochs": 2, "final_epochs": 6, "train_subset": 200, "final_models": 3}
    budget = time_budget(validate_config(raw, "t"), 1000, [], time.perf_counter())
    assert (budget.finalize_trials, budget.fidelity) == (3, 3 * 1000 / 200)
    raw["search"]["finalize"] = False
    assert time_budget(validate_config(raw, "t"), 1000, [], 0).finalize_trials == 0


def test_a_search_stops_starting_trials_when_its_time_is_up(tiny, teacher_cache, tmp_path):
    """A budget of 200 trials that 12 seconds cannot hold: the search ends early and cleanly,
    and a resume with the same time budget, its time spent, starts no trial."""
    out = tmp_path / "run"
    config = validate_config(tiny_raw(teacher_cache, out, budget=200, time_budget="12s"), "t")
    summary = run_search(config)
    assert 1 <= summary.completed < 200
    assert summary.time_stop.startswith("time budget: ") and summary.front_size >= 1
    again = run_search(resume_config(out), resume=True)
    assert again.completed == summary.completed
    assert "time budget: " in again.time_stop
    spent = sum(
        json.loads((out / "run.json").read_text())["sessions"][i]["wall_seconds"] for i in (0, 1)
    )
    more = run_search(resume_config(out, time_budget=f"{spent + 8:.0f}s"), resume=True)
    assert summary.completed < more.completed < 200  # eight more seconds: more trials, not all


def test_ray_starts_no_trial_the_time_budget_refuses():
    """Tune asks the searcher for a trial whenever a slot frees: past the time budget it is
    told the search is finished (the trials in flight still end), and trained trials' seconds
    reach the budget."""
    from ray.tune.search import Searcher

    from automl.controllers.ray_backend import BudgetSearcher
    from automl.controllers.study import FailureBudget

    class Inner:
        def suggest(self, trial_id):
            return {"trial_number": 0}

        def on_trial_complete(self, *args, **kwargs):
            pass

    class Controller:
        time_budget = TimeBudget(100, started=time.perf_counter() - 60)

    searcher = BudgetSearcher.__new__(BudgetSearcher)  # the driver-side state only
    searcher.__dict__.update(
        inner=Inner(),
        controller=Controller(),
        budget=10,
        completed=0,
        pending={},
        failures=FailureBudget(5, 0),
        too_many_rejected="",
    )
    assert searcher.suggest("a") == {"trial_number": 0}  # nothing known: one starts
    Controller.time_budget.record(50)  # 60 s used, a trial takes 50: 110 > 100
    assert searcher.suggest("b") is Searcher.FINISHED
    assert "the next trial would take about 50 s" in Controller.time_budget.stopped
