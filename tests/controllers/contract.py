"""The contract every controller meets, as real CLI processes. A backend's test module imports
these tests (`from tests.controllers.contract import *`) and defines two fixtures:

- `start_search(config_path, *args) -> Popen`: a `cli.py search` process of that backend, in a
  session of its own (so that killing its group kills the driver and nothing else);
- `check_backend(run_path)`: what that backend adds to the run directory (e.g. node ids).

Failures are real: tests/fault_technique.py, enabled as a plugin, fails trials while they are
built (`raise`) and through the real training loop (`nan`), in whichever process runs them.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna

from automl.early_stop import RUNGS_ATTR, EpochReport, RungTable
from tests.conftest import tiny_raw, write_config

__all__ = [
    "test_budget_counts_completed_trials_and_failures_are_recorded",
    "test_early_stopping_stops_the_students_its_rule_ranks_low",
    "test_sigkill_then_resume_loses_and_repeats_no_trial",
]


def rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "trials.csv").open()))


def complete_in_study(db: Path, name: str) -> dict[int, tuple[float, ...]]:
    """Completed trials and their objective values, read without writing: while the search
    process creates the schema, an Optuna storage opened here would try to create it too."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            found = con.execute(
                "SELECT t.number, v.value FROM trials t "
                "JOIN studies s ON s.study_id = t.study_id "
                "JOIN trial_values v ON v.trial_id = t.trial_id "
                "WHERE s.study_name = ? AND t.state = 'COMPLETE' ORDER BY t.number, v.objective",
                (name,),
            ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    done: dict[int, list[float]] = {}
    for number, value in found:
        done.setdefault(number, []).append(value)
    return {n: tuple(v) for n, v in done.items()}


def wait(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    text = (out or "") + (err or "")
    assert proc.returncode == 0, text[-4000:]
    return text


def test_budget_counts_completed_trials_and_failures_are_recorded(
    start_search, check_backend, tiny, teacher_cache, tmp_path
):
    run = tmp_path / "run"
    raw = tiny_raw(teacher_cache, run, budget=3)
    raw["plugins"] = ["tests.fault_technique"]
    raw["search_space"] = {"techniques": ["depth", "channels", "weight_quant", "fault"]}
    # the third, the whole teacher at 32 bits (about 45 MB), breaks the size limit: it is
    # measured, rejected before training and not counted
    whole = {"fault": "none", "blocks": "high", "channel_keep": "high", "bits": 32}
    raw["search"]["enqueue"] = [{"fault": "raise"}, {"fault": "nan", "blocks": "low"}, whole]
    raw["search"]["max_size_kb"] = 30_000
    wait(start_search(write_config(tmp_path / "c.yaml", raw)))
    trials = rows(run)
    done = [r for r in trials if r["state"] == "COMPLETE" and not r["rejected"]]
    failed = [r for r in trials if r["state"] == "FAIL"]
    assert len(done) == 3, [(r["state"], r["fault"], r["rejected"]) for r in trials]
    rejected = [r for r in trials if r["rejected"]]
    assert rejected[0]["number"] == "2" and rejected[0]["state"] == "COMPLETE"
    for row in rejected:
        assert row["rejected"].startswith("rejected before training: size ")
        assert float(row["size_bytes"]) > 30e6 and float(row["train_seconds"]) == 0
    assert all(float(r["size_bytes"]) <= 30e6 for r in done)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run}/study.db")
    told = {t.number: t.constraints for t in study.trials if t.state.name == "COMPLETE"}
    assert all(told[int(r["number"])]["size_kb"] > 0 for r in rejected)
    assert all(told[int(r["number"])]["size_kb"] <= 0 for r in done)
    assert all(r["fault"] == "none" for r in done)
    # the queued trials come first, with their fixed values, through this controller
    assert (trials[0]["state"], trials[0]["fault"]) == ("FAIL", "raise")
    assert "RuntimeError: injected fault" in trials[0]["error"]
    assert (trials[1]["state"], trials[1]["fault"], trials[1]["stage3.blocks"]) == (
        "FAIL",
        "nan",
        "1",
    )
    assert "NonFiniteLoss" in trials[1]["error"]
    assert all(r["fault"] != "none" for r in failed)  # no other trial failed
    front = json.loads((run / "pareto.json").read_text())["front"]
    assert {m["trial"] for m in front} <= {int(r["number"]) for r in done}
    session = json.loads((run / "run.json").read_text())["sessions"][-1]
    assert session["sampler"] == "RandomSampler"
    check_backend(run)


def test_sigkill_then_resume_loses_and_repeats_no_trial(
    start_search, check_backend, tiny, teacher_cache, tmp_path
):
    run = tmp_path / "killed"
    config = write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache, run, budget=4))
    proc = start_search(config)
    deadline = time.monotonic() + 240
    while len(complete_in_study(run / "study.db", "tiny")) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial completed in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = complete_in_study(run / "study.db", "tiny")
    assert 2 <= len(before) < 4

    wait(start_search(None, "--resume", "--out", str(run)))
    after = complete_in_study(run / "study.db", "tiny")
    assert len(after) == 4
    assert all(after[n] == values for n, values in before.items())  # kept, not re-run
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run}/study.db")
    archs = [
        json.dumps(t.user_attrs["architecture"], sort_keys=True)
        for t in study.trials
        if t.state.name == "COMPLETE"
    ]
    assert len(set(archs)) == len(archs)
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "FAIL"}
    interrupted = [r for r in rows(run) if r["state"] == "FAIL"]
    assert all(r["error"].startswith("interrupted") for r in interrupted)
    doc = json.loads((run / "run.json").read_text())
    assert len(doc["sessions"]) == 1 and doc["status"] == "complete"  # the killed one left none
    check_backend(run)


def test_early_stopping_stops_the_students_its_rule_ranks_low(
    start_search, check_backend, tiny, teacher_cache, tmp_path
):
    """ASHA through the controller, one trial at a time: every trial reports at the rung
    (epoch 1 of 2) and keeps the report, the trials stopped are exactly those the rule stops
    when the reports are replayed in order (the second, the space's weakest corner after its
    strongest, is), they count toward the budget and never enter the front. (MO-ASHA's rule
    is one RungTable with the same path; tests/test_early_stop.py holds both rules.)"""
    run = tmp_path / "run"
    raw = tiny_raw(teacher_cache, run, budget=3, early_stop="asha", reduction_factor=2)
    raw["training"]["epochs"] = 2
    raw["ray"] = {"max_concurrent": 1}
    raw["search"]["enqueue"] = [
        {"blocks": "high", "channel_keep": "high", "bits": 8},
        {"blocks": "low", "channel_keep": "low", "bits": 4},
    ]
    wait(start_search(write_config(tmp_path / "c.yaml", raw)))
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run}/study.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert len(trials) == 3  # stopped trials count toward the budget
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    replay = RungTable("asha", max_epochs=2, eta=2)
    for t in trials:
        assert list(t.user_attrs[RUNGS_ATTR]) == ["1"]
        [[acc, latency, size]] = t.user_attrs[RUNGS_ATTR].values()
        stopped = replay.report(t.number, EpochReport(1, acc, latency, int(size)))
        assert stopped == (t.state.name == "PRUNED"), t.number
        if stopped:
            assert t.user_attrs["error"].startswith("stopped early by asha after epoch 1 ")
        else:  # the latency and size it reported are its final ones
            assert (latency, size) == (t.values[1], t.values[2])
    pruned = {int(r["number"]) for r in rows(run) if r["state"] == "PRUNED"}
    assert pruned == {t.number for t in trials if t.state.name == "PRUNED"}
    assert 1 in pruned  # the weak corner, below the strong one at the rung
    front = json.loads((run / "pareto.json").read_text())["front"]
    assert not {m["trial"] for m in front} & pruned
    check_backend(run)
