"""`train`: train and score one architecture with a search's recipe, outside a search."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from automl.config import ExperimentConfig
from automl.errors import UserError
from automl.experiment import prepare
from automl.files import check_writable
from automl.paths import file_in_the_way, not_a_file
from automl.student.files import save_student
from automl.trial import TrialResult, run_trial
from search_spaces import Architecture


def read_architecture(path: Path) -> Architecture:
    """An architecture file: architecture.json of an export, or a models/trial_NNNN.json (of
    this version or an earlier one)."""
    problem = not_a_file(path)
    if problem is not None:
        raise UserError(f"architecture: {problem}")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("architecture"), dict):
        doc = doc["architecture"]
    try:
        return Architecture.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(
            f"{path} is not an architecture ({problems}); expected the architecture.json of an "
            "export or a models/trial_NNNN.json of a run"
        ) from None


def check_out_file(path: Path) -> None:
    """Raise UserError, before any work, when `path` cannot be written: it is a folder, a
    folder on its way is a file, or it exists (a command never writes over results it did not
    write itself: `path` may be an export's weights, which its ONNX file and card describe)."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; choose another --out")
    if path.exists():
        raise UserError(
            f"--out: {path} already exists; choose a new folder (train never writes over a "
            "saved model)"
        )
    blocked = file_in_the_way(path)
    if blocked is not None:
        raise UserError(f"--out: {blocked} is a file, not a folder; choose another --out")
    check_writable(path.parent)  # before the training, not after it


def train_architecture(
    config: ExperimentConfig, arch: Architecture, seed: int, kd: bool, out: Path | None
) -> TrialResult:
    """Run one trial of `arch` exactly as the search would (same data, teacher, recipe and,
    given the trial's seed, the same numbers); with `out`, save the student there."""
    exp = prepare(config)
    stages = exp.stages
    try:
        arch.check_fits(stages)
    except ValueError as exc:
        raise UserError(
            f"the architecture does not fit teacher {config.teacher.model}: {exc}; use the "
            "config (--config/--run) of the search it came from"
        ) from None
    result, model = run_trial(arch, exp.trial_context(), seed, kd=kd)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"teacher": exp.teacher.card.model, "seed": seed, "kd": kd, **result.model_dump()}
        save_student(out / "model.safetensors", model, arch, meta)
    return result
