"""The export folder: refused over existing files, whole or absent, and its model card."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from automl.deploy.check import ExportCheckFailed
from automl.deploy.export import (
    FILES,
    OWNER,
    card_markdown,
    check_out_dir,
    export_trial,
    remove_stale_staging,
)
from automl.deploy.remeasure import MeasureSettings
from automl.errors import UserError
from automl.run.finished import open_search_run
from automl.student.packed import load_packed_student
from tests.deploy.test_check import nothing_passes

QUICK = MeasureSettings(batch_sizes=(1, 4), rounds=1, calls=2, warmup=1)


def test_an_existing_folder_with_files_is_refused(tmp_path):
    check_out_dir(tmp_path / "new")  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty")  # empty: fine
    (tmp_path / "empty" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="not empty"):
        check_out_dir(tmp_path / "empty")
    with pytest.raises(UserError, match=r"mine.txt is a file, not a folder"):
        check_out_dir(tmp_path / "empty" / "mine.txt" / "model")


def test_the_folder_holds_its_files_and_a_card_that_reads(searched_run, tmp_path):
    run = open_search_run(searched_run)
    trial = run.front[0].trial
    card = export_trial(run, trial, tmp_path / "model", QUICK, "python cli.py train ...")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(FILES)
    assert card["format"] == "int8"  # the searched run keeps weights at 8 bits or below
    assert set(card["compression"]) == {"depth", "channels", "weight_quant"}
    ratio = card["int8_speedup_vs_fp32"]
    lat = card["onnxruntime_latency_ms"]
    assert ratio["batch_4"] == pytest.approx(
        lat["fp32 export"]["batch_4"] / lat["model.onnx"]["batch_4"], rel=0.01
    )
    packed = card["metrics"]["packed_file_bytes"]
    assert packed == (tmp_path / "model" / "model.packed").stat().st_size
    assert abs(packed / card["metrics"]["packed_size_bytes"] - 1) <= 0.05
    data = run.load_data()
    dense, _ = run.load_model(run.member(trial), data)
    teacher = run.config.teacher
    rebuilt, arch = load_packed_student(
        tmp_path / "model" / "model.packed",
        teacher.model,
        data.in_chans,
        data.num_classes,
        data.image_size,
        teacher.small_input,
    )
    assert arch == run.member(trial).architecture
    x = data.example_input(8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), dense(x), atol=1e-5, rtol=1e-5)
    text = (tmp_path / "model" / "card.md").read_text()
    assert f"trial {trial}" in text and "weight bits" in text and "int8 against its fp32" in text
    fp32_card = {**card, "format": "fp32", "int8_speedup_vs_fp32": None}
    fp32_card["onnxruntime_latency_ms"] = {"model.onnx": lat["model.onnx"]}
    assert "int8 against" not in card_markdown(fp32_card)


def test_a_failed_export_leaves_no_folder(searched_run, tmp_path, monkeypatch):
    run_copy = tmp_path / "run"
    shutil.copytree(searched_run, run_copy)
    run = open_search_run(run_copy)
    nothing_passes(monkeypatch)
    with pytest.raises(ExportCheckFailed):
        export_trial(run, run.front[0].trial, tmp_path / "out" / "model", QUICK, "-")
    # neither the folder nor its staging, nor the parent the export made for it
    assert not (tmp_path / "out").exists()


def test_a_killed_exports_staging_folder_is_removed_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "export" / "trial_0003"
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its PID names no process now
    stale, legacy, live = (out.parent / f".trial_0003.{tag}" for tag in ("abc", "old", "xyz"))
    for folder in (stale, legacy, live):
        (folder / "export").mkdir(parents=True)
        (folder / "export" / "model.onnx").write_bytes(b"0" * 100)
    (stale / OWNER).write_text(f"{gone.pid}\n")
    (live / OWNER).write_text(f"{os.getpid()}\n")
    (out.parent / ".trial_00031.abc").mkdir()  # another trial's
    assert sorted(remove_stale_staging(out)) == sorted([stale, legacy])
    assert live.is_dir() and (out.parent / ".trial_00031.abc").is_dir()


def test_each_write_of_an_export_fails_safely(searched_run, tmp_path, monkeypatch):
    """A full disk at each file the export writes itself: one WriteFailed naming the file,
    no export folder, no staging folder, and the run as it was. (The ONNX files are written
    by torch's exporter and ONNX Runtime's quantizer; a failure there is an OSError that the
    export turns into the same message.)"""
    import errno

    from automl import files
    from automl.files import WriteFailed

    run_copy = tmp_path / "run"
    shutil.copytree(searched_run, run_copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    real = files._write_bytes
    for name in ("model.safetensors", "model.packed", "architecture.json", "card.json"):

        def full(path, data, name=name):
            if path.name == f"{name}.tmp":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(path, data)

        monkeypatch.setattr(files, "_write_bytes", full)
        run = open_search_run(run_copy)
        with pytest.raises(WriteFailed, match=f"cannot write .*/{name}: No space left"):
            export_trial(run, run.front[0].trial, tmp_path / "out" / "model", QUICK, "-")
        assert not (tmp_path / "out").exists(), name
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before
