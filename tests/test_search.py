"""The whole search through the real code paths: Optuna in SQLite, real students, files."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from automl.config import validate_config
from automl.controllers import optuna_backend
from automl.errors import UserError
from automl.pareto import non_dominated
from automl.rundir import REFERENCE_POINT, minimisation_objectives
from automl.search import run_search
from automl.trial import TrialResult
from tests.conftest import tiny_raw, write_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished_run(tiny, teacher_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    config = validate_config(tiny_raw(teacher_cache, out, budget=6, sampler="tpe"), "test")
    summary = run_search(config)
    return out, summary


def test_run_directory_contract(finished_run):
    out, summary = finished_run
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["seed"] == 0
    assert {"params", "size_bytes", "latency_ms", "val_accuracy", "test_accuracy"} <= set(
        run["teacher"]
    )
    assert {"torch", "timm", "optuna"} <= set(run["versions"]) and run["wall_seconds"] > 0
    study = optuna.load_study(study_name=run["study_name"], storage=f"sqlite:///{out}/study.db")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 6 == summary.completed

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == len(study.trials)
    for col in (
        "number",
        "state",
        "stage0.channel_keep",
        "stage3.bits",
        "criterion",
        "val_accuracy",
        "latency_ms",
        "size_bytes",
        "params",
        "macs",
        "train_seconds",
        "error",
    ):
        assert col in rows[0]
    assert "test_accuracy" not in rows[0]  # reported for the front only

    pareto = json.loads((out / "pareto.json").read_text())
    front = pareto["front"]
    assert len(front) == summary.front_size >= 1
    results = [
        TrialResult(**{k: m[k] for k in TrialResult.model_fields if k != "epochs"}, epochs=1)
        for m in front
    ]
    points = minimisation_objectives(results, pareto["teacher"])
    assert sorted(non_dominated(points).tolist()) == list(range(len(front)))
    assert pareto["hypervolume"] >= 0 and set(pareto["reference_point"]) == {
        "val_accuracy",
        "latency_ms",
        "size_bytes",
    }
    assert REFERENCE_POINT.tolist() == [1.0, 1.0, 1.0]
    weights = sorted(p.name for p in (out / "models").glob("*.safetensors"))
    assert weights == sorted(Path(m["weights"]).name for m in front)  # front only, all of it
    for m in front:
        assert {
            "trial",
            "architecture",
            "val_accuracy",
            "test_accuracy",
            "latency_ms",
            "size_bytes",
            "params",
            "macs",
        } <= set(m)
        assert (out / m["weights"]).with_suffix(".json").is_file()

    html = (out / "report.html").read_text()
    assert "Plotly.newPlot" in html and '<script src="http' not in html
    assert html.count("<tr>") == len(front) + 1


def test_an_existing_run_needs_resume(finished_run, teacher_cache):
    out, _ = finished_run
    config = validate_config(tiny_raw(teacher_cache, out), "test")
    with pytest.raises(UserError, match="--resume"):
        run_search(config)


def test_failed_and_nan_trials_are_recorded_and_the_search_goes_on(
    tiny, teacher_cache, tmp_path, monkeypatch
):
    real = optuna_backend.run_trial

    def flaky(arch, ctx, seed, reporter=None):
        number = seed  # the controller seeds each trial with config.seed (0) + its number
        if number == 1:
            raise RuntimeError("injected failure")
        if number == 3:  # a real NaN loss, from the real training loop
            ctx = type(ctx)(**{**ctx.__dict__, "teacher_logits": ctx.teacher_logits * float("nan")})
        return real(arch, ctx, seed, reporter)

    monkeypatch.setattr(optuna_backend, "run_trial", flaky)
    config = validate_config(tiny_raw(teacher_cache, tmp_path / "r", budget=3), "test")
    summary = run_search(config)
    rows = {int(r["number"]): r for r in csv.DictReader((tmp_path / "r" / "trials.csv").open())}
    assert summary.completed == 3
    assert rows[1]["state"] == "FAIL" and "injected failure" in rows[1]["error"]
    assert rows[3]["state"] == "FAIL" and "NonFiniteLoss" in rows[3]["error"]
    assert sum(r["state"] == "COMPLETE" for r in rows.values()) == 3


@pytest.mark.parametrize("sampler", ["nsga2", "random"])
def test_other_samplers_run(tiny, teacher_cache, tmp_path, sampler):
    config = validate_config(
        tiny_raw(teacher_cache, tmp_path / sampler, budget=2, sampler=sampler), "test"
    )
    assert run_search(config).completed == 2


def _complete(db: Path, name: str) -> dict[int, tuple]:
    """Completed trials, read without writing: while the search process creates the schema,
    an Optuna storage opened here would try to create it too."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute(
                "SELECT t.number, v.objective, v.value FROM trials t "
                "JOIN studies s ON s.study_id = t.study_id "
                "JOIN trial_values v ON v.trial_id = t.trial_id "
                "WHERE s.study_name = ? AND t.state = 'COMPLETE' ORDER BY t.number, v.objective",
                (name,),
            ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    done: dict[int, list] = {}
    for number, _, value in rows:
        done.setdefault(number, []).append(value)
    return {n: tuple(v) for n, v in done.items()}


def test_sigkill_then_resume_loses_and_repeats_no_trial(tiny, teacher_cache, tmp_path):
    out = tmp_path / "killed"
    cfg = write_config(tmp_path / "c.yaml", tiny_raw(teacher_cache, out, budget=6))
    cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--config", str(cfg)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.time() + 180
    while len(_complete(out / "study.db", "tiny")) < 2 and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _complete(out / "study.db", "tiny")
    assert 2 <= len(before) < 6

    resumed = subprocess.run(
        [*cmd[:3], "--resume", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    after = _complete(out / "study.db", "tiny")
    assert len(after) == 6
    assert all(after[n] == values for n, values in before.items())  # kept, not re-run
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out}/study.db")
    archs = [
        json.dumps(t.user_attrs["architecture"], sort_keys=True)
        for t in study.trials
        if t.state.name == "COMPLETE"
    ]
    assert len(set(archs)) == len(archs)
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)
    run = json.loads((out / "run.json").read_text())
    assert len(run["sessions"]) == 1 and run["status"] == "complete"
