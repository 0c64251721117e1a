"""After a search: `report`, `pick` and `train` as a user runs them (real CLI processes), the
exported model run with nothing but ONNX Runtime and its card, and the bad inputs of these
commands (in process: the same typer app, without an interpreter start each)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from scipy.stats import kendalltau
from sklearn.datasets import load_digits

from automl.data.bundle import stratified_indices
from automl.deploy.remeasure import MeasureSettings, rebuild_report
from automl.run.documents import FORMAT
from automl.run.finished import open_search_run
from tests.conftest import cli, cli_in_process


@pytest.fixture(scope="module")
def reported(searched_run, tmp_path_factory) -> Path:
    """A copy of the tiny run, re-measured by `report` (small rounds to keep tests quick)."""
    run = tmp_path_factory.mktemp("reported") / "tiny"
    shutil.copytree(searched_run, run)
    proc = cli("report", run, "--rounds", "2", "--batch", "8")
    assert proc.returncode == 0, proc.stderr
    return run


def test_report_adds_the_measured_figures(reported, searched_run):
    before = json.loads((searched_run / "pareto.json").read_text())
    pareto = json.loads((reported / "pareto.json").read_text())
    assert [m["trial"] for m in pareto["front"]] == [m["trial"] for m in before["front"]]
    assert pareto["measurement"]["batch_sizes"] == [1, 8]
    assert pareto["format"] == FORMAT
    teacher = pareto["teacher"]
    for runtime in ("torch", "onnxruntime"):
        assert set(teacher["measured_latency_ms"][runtime]) == {"batch_1", "batch_8"}
    for m in pareto["front"]:
        assert m["compression"] == pytest.approx(teacher["size_bytes"] / m["size_bytes"], 0.01)
        lat = m["measured_latency_ms"]["torch"]["batch_1"]
        assert m["speedup"]["torch"]["batch_1"] == pytest.approx(
            teacher["measured_latency_ms"]["torch"]["batch_1"] / lat, rel=0.01
        )
        dep = m["deployed"]
        if "error" in dep:  # a failed check says what it measured
            assert "ONNX Runtime against" in dep["error"]
        else:
            assert dep["format"] == "int8" and (reported / "onnx" / dep["path"]).is_file()
    deployed = [m for m in pareto["front"] if "error" not in m["deployed"]]
    assert deployed, "no front model passed its export check"
    assert pareto["knee_trial"] in {m["trial"] for m in pareto["front"]}
    # the search timed ONNX Runtime at batch 1; report says how its ranking held
    searched = [m["latency_ms"] for m in pareto["front"]]
    remeasured = [m["measured_latency_ms"]["onnxruntime"]["batch_1"] for m in pareto["front"]]
    tau = pareto["measurement"].get("search_rank_tau")
    if len(set(searched)) > 1 and len(set(remeasured)) > 1:
        assert tau == pytest.approx(kendalltau(searched, remeasured).statistic, abs=1e-4)
    html = (reported / "report.html").read_text()
    assert 'id="deployed-plots"' in html and "Knee point" in html


def test_rebuilding_the_report_keeps_the_front(reported, tmp_path):
    run = tmp_path / "again"
    shutil.copytree(reported, run)
    first = json.loads((run / "pareto.json").read_text())
    rebuild_report(open_search_run(run), MeasureSettings(batch_sizes=(1, 8), rounds=1, calls=2))
    second = json.loads((run / "pareto.json").read_text())
    strip = ("measured_latency_ms", "speedup", "deployed", "onnx_compression")
    assert [{k: v for k, v in m.items() if k not in strip} for m in second["front"]] == [
        {k: v for k, v in m.items() if k not in strip} for m in first["front"]
    ]
    assert second["hypervolume"] == first["hypervolume"]
    assert sorted(p.name for p in (run / "models").iterdir()) == sorted(
        p.name for p in (reported / "models").iterdir()
    )


def _preprocess_like_a_user(images_0_16: np.ndarray, pre: dict) -> np.ndarray:
    """Only the card's `preprocess`, with PIL instead of this tool's own code."""
    h, w = pre["resize"]
    out = []
    for img in images_0_16:
        resized = Image.fromarray(img.astype(np.float32), mode="F").resize(
            (w, h), Image.Resampling.BILINEAR
        )
        x = np.asarray(resized, dtype=np.float32) / pre["divide_by"]
        out.append((x - pre["mean"][0]) / pre["std"][0])
    return np.stack(out)[:, None, :, :].astype(np.float32)


def test_pick_exports_a_model_that_runs_from_its_card(reported, tmp_path):
    out = tmp_path / "model"
    proc = cli("pick", reported, "--min-accuracy", "0", "--out", out, "--rounds", "2")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "model.onnx",
            "model.packed",
            "model.safetensors",
            "architecture.json",
            "card.json",
            "card.md",
        ]
    )
    card = json.loads((out / "card.json").read_text())
    pareto = json.loads((reported / "pareto.json").read_text())
    deployable = [m for m in pareto["front"] if "error" not in m["deployed"]]
    best = max(m["val_accuracy"] for m in deployable)
    assert card["metrics"]["val_accuracy"] == best
    assert set(card["preprocess"]) == {
        "resize",
        "interpolation",
        "divide_by",
        "mean",
        "std",
        "channels",
    }
    assert card["preprocess"]["interpolation"] == "bilinear"
    assert card["preprocess"]["divide_by"] == 16.0
    assert "train" in card["reproduce"] and "--seed" in card["reproduce"]
    # the parity check: never more than 5 of the 360 test images lost (1.4 points) ...
    onnx_acc, torch_acc = card["metrics"]["onnx_test_accuracy"], card["metrics"]["test_accuracy"]
    assert onnx_acc >= torch_acc - 5 / 360
    # ... and the images whose class changed are counted, at least the accuracy's change
    changed = card["deployment"]["test_images_disagreeing_with_pytorch"]
    assert round(abs(onnx_acc - torch_acc) * 360) <= changed <= 0.05 * 360
    assert "Reproduce" in (out / "card.md").read_text()
    lat = card["onnxruntime_latency_ms"]
    assert set(lat["model.onnx"]) == {"batch_1", "batch_32"}
    assert card["format"] == "int8"  # every weight of this run is at most 8 bits
    # measured against its own fp32 export, side by side
    assert card["int8_speedup_vs_fp32"]["batch_32"] == pytest.approx(
        lat["fp32 export"]["batch_32"] / lat["model.onnx"]["batch_32"], rel=0.01
    )
    assert card["metrics"]["onnx_bytes"] <= 0.30 * card["metrics"]["fp32_onnx_bytes"]

    # A user's view: raw digits, the card, ONNX Runtime. No code of this tool.
    digits = load_digits()
    _, _, test = stratified_indices(digits.target, 0.2, 0.2, 0)
    x = _preprocess_like_a_user(digits.images[test], card["preprocess"])
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {card["input"]["name"]: x})[0]
    acc = float((logits.argmax(1) == digits.target[test]).mean())
    assert abs(acc - card["metrics"]["test_accuracy"]) <= 0.03
    assert acc > 0.3  # well above chance (0.1): the preprocessing is right

    # The exported architecture retrains to the same student (same seed, same recipe).
    # The card's own command, run from another directory: its paths are absolute.
    command = shlex.split(card["reproduce"])
    assert command[0] == "python" and all(Path(a).is_absolute() for a in command[1:6:2])
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["val_accuracy"] == pytest.approx(best, abs=1e-6)


def test_pick_when_nothing_fits(reported):
    result = cli_in_process("pick", reported, "--max-latency-ms", "1e-6")
    assert result.exit_code == 1
    assert "no front model meets latency <= 1e-06 ms" in result.stderr
    assert "closest" in result.stderr and "trial " in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--trial", "9999"], "trial 9999 is not on the Pareto front"),
        (["--min-accuracy", "1.5"], "--min-accuracy is a fraction in [0, 1]"),
        (["--trial", "0", "--max-size-kb", "10"], "drop the other constraints"),
    ],
)
def test_pick_bad_input_exits_2(reported, args, needle):
    result = cli_in_process("pick", reported, *args)
    assert result.exit_code == 2, result.stderr
    assert needle in result.stderr


def test_pick_never_writes_over_a_folder(reported, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = cli_in_process("pick", reported, "--out", tmp_path)
    assert result.exit_code == 2 and "not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_commands_on_a_missing_or_broken_run_exit_2(tmp_path):
    for command in ("report", "pick"):
        result = cli_in_process(command, tmp_path / "nope")
        assert result.exit_code == 2 and "no run directory" in result.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{}")
    (tmp_path / "broken" / "pareto.json").write_text("{}")
    result = cli_in_process("report", tmp_path / "broken")
    assert result.exit_code == 2 and "is not a RunDocument of this tool" in result.stderr


def test_train_without_distillation_and_bad_files(reported, tmp_path):
    arch = next((reported / "models").glob("trial_*.json"))
    searched = json.loads(arch.read_text())  # trained with distillation, at the trial's seed
    seed = str(json.loads((reported / "run.json").read_text())["seed"] + searched["trial"])
    proc = cli(
        "train", arch, "--run", reported, "--seed", seed, "--no-kd", "--out", tmp_path / "ce"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["epochs"] == 2 and result["val_accuracy"] > 0.2  # it learned without KD
    # the same student, seed and epochs without the teacher: other figures than the search's
    figures = ("val_accuracy", "test_accuracy")
    assert tuple(result[k] for k in figures) != tuple(searched[k] for k in figures)
    saved = json.loads((tmp_path / "ce" / "model.json").read_text())
    assert saved["kd"] is False

    (tmp_path / "bad.json").write_text('{"stages": []}')
    result = cli_in_process("train", tmp_path / "bad.json", "--run", reported)
    assert result.exit_code == 2 and "is not an architecture" in result.stderr
    result = cli_in_process("train", tmp_path / "none.json", "--run", reported)
    assert result.exit_code == 2 and "architecture: file not found" in result.stderr
