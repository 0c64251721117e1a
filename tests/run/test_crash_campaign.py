"""The crash campaign: one proxy search SIGKILLed at each moment that could lose or damage
work (tests/crash_points.py places the kills), every time continued, and at the end checked
against its study. Real processes throughout: `cli.py search` as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import optuna

from tests.conftest import ROOT, tiny_raw, write_config
from tests.controllers.contract import complete_in_study

BUDGET = 3


def search(*args: object, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AUTOML_CRASH_AT"}
    if crash_at is not None:
        env["AUTOML_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "search", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


def test_sigkill_at_every_moment_then_resume_loses_and_repeats_nothing(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "teachers"
    raw = tiny_raw(cache, run, budget=BUDGET)
    raw["teacher"]["epochs"] = 2  # the kill comes after the first
    raw["training"] = {"epochs": 1, "train_subset": 300, "final_epochs": 1}
    raw["plugins"] = ["tests.crash_points"]
    config = write_config(tmp_path / "c.yaml", raw)
    resume = ("--resume", "--out", run)

    # 1. while the teacher trains: nothing is cached half, and --resume says what to do
    killed(search("--config", config, crash_at="teacher"))
    assert not list(cache.rglob("card.json")) and not (run / "run.json").exists()
    refused = search(*resume)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "Run the same command without --resume" in " ".join(refused.stderr.split())

    # 2. the same command again, killed as the third student trains
    killed(search("--config", config, crash_at="trial:3"))
    done = complete_in_study(run / "study.db", "tiny")
    assert sorted(done) == [0, 1]

    # 3. resumed, killed after a student's weights are written but before its trial completes
    killed(search(*resume, crash_at="weights:1"))
    assert complete_in_study(run / "study.db", "tiny") == done
    orphan = run / "models" / "trial_0003.safetensors"  # 2 was killed before its weights
    assert orphan.is_file()

    # 4. resumed to the budget, killed during the final writes
    killed(search(*resume, crash_at="report"))
    early, done = done, complete_in_study(run / "study.db", "tiny")
    assert len(done) == BUDGET and all(done[n] == v for n, v in early.items())
    assert json.loads((run / "run.json").read_text())["status"] == "running"

    # 5. resumed: no trial runs again; finalize starts and is killed after its first model
    killed(search(*resume, crash_at="finalize:1"))
    assert complete_in_study(run / "study.db", "tiny") == done
    (first,) = run.glob("models/final_*.safetensors")
    first_written = first.stat().st_mtime_ns

    # 6. resumed without a kill: it finishes, and the first retrained model is kept
    finished = search(*resume)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert complete_in_study(run / "study.db", "tiny") == done
    assert first.stat().st_mtime_ns == first_written  # reused, not trained again

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run}/study.db")
    states = {t.number: t.state.name for t in study.trials}
    assert set(states.values()) <= {"COMPLETE", "FAIL"}
    archs = [
        json.dumps(t.user_attrs["architecture"], sort_keys=True)
        for t in study.trials
        if t.state.name == "COMPLETE"
    ]
    assert len(archs) == BUDGET and len(set(archs)) == len(archs)  # none trained twice
    rows = list(csv.DictReader((run / "trials.csv").open()))
    assert {int(r["number"]): r["state"] for r in rows} == states
    interrupted = [r for r in rows if r["state"] == "FAIL"]
    assert len(interrupted) == 2 and all(r["error"].startswith("interrupted") for r in interrupted)
    doc = json.loads((run / "run.json").read_text())
    # a session is recorded when its search part ends: 5 (killed later, in finalize) and 6
    assert doc["status"] == "complete" and len(doc["sessions"]) == 2
    assert "node_id" not in rows[0] and not (run / "ray").exists()  # the Optuna controller's
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto["finalized"] is not None
    proxy = json.loads((run / "proxy_pareto.json").read_text())
    assert {m["trial"] for m in proxy["front"]} <= set(done)
    for m in proxy["front"]:  # the proxy figures are the study's, as they were
        assert m["val_accuracy"] == done[m["trial"]][0]
    kept = {p.name for p in run.glob("models/trial_*.safetensors")}
    assert kept == {f"trial_{m['trial']:04d}.safetensors" for m in proxy["front"]}
    assert not orphan.exists()  # trial 3 never completed
    assert not list(run.rglob("*.tmp"))
