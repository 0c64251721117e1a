"""The whole search through the real code paths: Optuna in SQLite, real students, the run
directory's contract, and where a resumed run writes."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest

from automl.config import validate_config
from automl.controllers.study import StudyRef
from automl.errors import UserError
from automl.objectives import REFERENCE_POINT
from automl.pareto import hypervolume
from automl.run.documents import ParetoDocument, front_points, read_document
from automl.run.search import resume_config, run_search
from tests.conftest import ENQUEUED, tiny_raw


@pytest.fixture(scope="module")
def finished_run(tiny, teacher_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    config = validate_config(tiny_raw(teacher_cache, out, budget=5, sampler="tpe"), "test")
    return out, run_search(config)


def test_run_directory_contract(finished_run):
    out, summary = finished_run
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["seed"] == 0 and run["format"] == 4
    assert {"params", "size_bytes", "latency_ms", "val_accuracy", "test_accuracy"} <= set(
        run["teacher"]
    )
    assert {"torch", "timm", "optuna", "torch_pruning"} <= set(run["versions"])
    assert run["wall_seconds"] > 0 and run["sessions"][0]["sampler"] == "TPESampler"
    assert run["stages"][0]["blocks"] == "1..2" and run["stages"][0]["stage"] == "layer1"
    study = optuna.load_study(study_name=run["study_name"], storage=f"sqlite:///{out}/study.db")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 5 == summary.completed

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == len(study.trials)
    for col in ("stage0.channel_keep", "stage0.blocks", "stage3.bits", "criterion", "macs"):
        assert col in rows[0]
    assert "test_accuracy" not in rows[0]  # reported for the front only

    pareto = read_document(out / "pareto.json", ParetoDocument)
    assert len(pareto.front) == summary.front_size >= 1
    complete = {int(r["number"]) for r in rows if r["state"] == "COMPLETE"}
    assert {m.trial for m in pareto.front} <= complete
    # The stored hypervolume is the one of the stored front (not a constant, not stale).
    assert pareto.hypervolume == pytest.approx(hypervolume(front_points(pareto), REFERENCE_POINT))
    assert pareto.hypervolume == pytest.approx(summary.hypervolume) and pareto.hypervolume > 0
    weights = sorted(p.name for p in (out / "models").glob("*.safetensors"))
    assert weights == sorted(Path(m.weights).name for m in pareto.front)  # front only, all of it
    for m in pareto.front:
        assert (out / m.weights).with_suffix(".json").is_file()
    html = (out / "report.html").read_text()
    assert "Plotly.newPlot" in html and '<script src="http' not in html
    assert html.count("<tr>") == len(pareto.front) + 1
    assert "weight bits" in html and "channels kept" in html  # the techniques' own columns


def test_the_summary_compares_the_best_student_with_the_teacher(finished_run):
    out, summary = finished_run
    pareto = json.loads((out / "pareto.json").read_text())
    assert summary.best_val_accuracy == max(m["val_accuracy"] for m in pareto["front"])
    assert summary.teacher_val_accuracy == pareto["teacher"]["val_accuracy"]
    close = dataclasses.replace(summary, best_val_accuracy=0.95, teacher_val_accuracy=0.96)
    assert close.gap_hint() == "best student val 0.9500, teacher 0.9600 (-1.0 points)"
    far = dataclasses.replace(close, best_val_accuracy=0.80, epochs=3)
    assert "(-16.0 points). Students trained for 3 epochs fall short" in far.gap_hint()
    assert dataclasses.replace(close, best_val_accuracy=None).gap_hint() is None


def test_an_existing_run_needs_resume(finished_run, teacher_cache):
    out, _ = finished_run
    with pytest.raises(UserError, match="--resume"):
        run_search(validate_config(tiny_raw(teacher_cache, out), "test"))


def test_a_copied_run_resumes_where_it_is(finished_run, tmp_path):
    """A run directory is relocatable: resuming a copy writes the copy, not the original."""
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (out / "trials.csv").read_text()
    teacher = json.loads((out / "run.json").read_text())["teacher"]
    summary = run_search(resume_config(copy, budget=6), resume=True)
    assert summary.run_dir == copy and summary.completed == 6
    assert (out / "trials.csv").read_text() == before  # the original is untouched
    doc = json.loads((copy / "run.json").read_text())
    assert len(doc["sessions"]) == 2 and doc["config"]["out"] == str(copy)
    # the run's own teacher figures, not a new latency that would move every objective
    assert doc["teacher"] == teacher
    assert json.loads((copy / "pareto.json").read_text())["teacher"] == teacher


def test_a_run_without_its_study_is_not_resumed(finished_run, tmp_path):
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "study.db").unlink()
    before = (copy / "trials.csv").read_text()
    with pytest.raises(UserError, match=r"--resume: .*study.db is missing; .* cannot be contin"):
        run_search(resume_config(copy, budget=6), resume=True)
    assert (copy / "trials.csv").read_text() == before and not (copy / "study.db").exists()


def test_too_many_failures_keep_the_trials_and_say_what_to_do(tiny, teacher_cache, tmp_path):
    raw = tiny_raw(teacher_cache, tmp_path / "run", max_failed_trials=0)
    raw["plugins"] = ["tests.fault_technique"]
    raw["search_space"] = {"techniques": ["depth", "channels", "weight_quant", "fault"]}
    raw["search"]["enqueue"] = [{"fault": "none"}, {"fault": "raise"}]
    with pytest.raises(UserError, match=r"1 trials failed .* kept in .*run: remove the cause"):
        run_search(validate_config(raw, "test"))
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    assert [(r["state"], r["fault"]) for r in rows] == [("COMPLETE", "none"), ("FAIL", "raise")]
    assert (tmp_path / "run" / "pareto.json").is_file()


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(UserError, match="no run to resume"):
        resume_config(tmp_path / "none")


def test_the_enqueued_corner_is_the_first_trial(searched_run):
    config = json.loads((searched_run / "run.json").read_text())["config"]
    assert config["search"]["enqueue"] == [ENQUEUED]
    first = next(csv.DictReader((searched_run / "trials.csv").open()))
    assert first["number"] == "0" and first["state"] == "COMPLETE"
    for i in range(4):
        assert (first[f"stage{i}.blocks"], first[f"stage{i}.channel_keep"]) == ("1", "0.25")
        assert first[f"stage{i}.bits"] == "6"


def test_an_enqueued_value_outside_a_stage_is_named(tiny, teacher_cache, tmp_path):
    raw = tiny_raw(teacher_cache, tmp_path / "run", enqueue=[{"bits": 8}, {"blocks": [1, 1, 1, 3]}])
    with pytest.raises(UserError, match=r"search.enqueue.1: blocks \(stage 3, layer4\): 3 is"):
        run_search(validate_config(raw, "test"))
    assert not (tmp_path / "run" / "study.db").exists()


def test_a_run_directory_named_like_a_url_keeps_its_study_inside(tiny, teacher_cache, tmp_path):
    out = tmp_path / "q?a=1%41#x"
    run_search(validate_config(tiny_raw(teacher_cache, out, budget=1), "test"))
    assert (out / "study.db").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    study = optuna.load_study(
        study_name="tiny", storage=StudyRef(out / "study.db", "tiny", out).url
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_a_resume_refuses_data_files_that_changed(tiny, teacher_cache, tmp_path):
    """An image folder that gained a file since the run began: the resume stops before any
    work, names the data, and leaves every file of the run as it was."""
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog", "owl")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = (rng.random((12, 12, 3)) * 60 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    raw = tiny_raw(teacher_cache, tmp_path / "run", budget=1)
    raw["data"] = {"type": "image_folder", "root": str(root), "image_size": 16, "channels": 3}
    raw["teacher"].update(epochs=1, batch_size=8)
    raw["training"]["batch_size"] = 8
    run = tmp_path / "run"
    run_search(validate_config(raw, "test"))
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(root / "owl" / "new.png")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.suffix != ".db"}
    with pytest.raises(UserError, match="the data found now differ from the data the run began"):
        run_search(resume_config(run, budget=2), resume=True)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.suffix != ".db"}
    assert after == before
    assert len(list(csv.DictReader((run / "trials.csv").open()))) == 1
