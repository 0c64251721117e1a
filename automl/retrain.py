"""`train`: train and score one architecture with a search's recipe, outside a search."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from automl.config import ExperimentConfig
from automl.errors import UserError
from automl.search import prepare
from automl.stages import Stage, find_stages
from automl.student_io import save_student
from automl.trial import TrialContext, TrialResult, run_trial
from search_spaces import Architecture


def read_architecture(path: Path) -> Architecture:
    """An architecture file: architecture.json of an export, or a models/trial_NNNN.json."""
    if not path.is_file():
        raise UserError(f"architecture file not found: {path}")
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


def check_fits(arch: Architecture, stages: list[Stage], teacher: str) -> None:
    if len(arch.stages) != len(stages):
        raise UserError(
            f"the architecture has {len(arch.stages)} stages but teacher {teacher} has "
            f"{len(stages)}; use the config (--config/--run) of the search it came from"
        )
    for stage, a in zip(stages, arch.stages, strict=True):
        if not stage.min_blocks <= a.blocks <= stage.num_blocks:
            raise UserError(
                f"stage {stage.index} keeps {a.blocks} blocks; teacher {teacher} allows "
                f"{stage.min_blocks} to {stage.num_blocks} there"
            )


def train_architecture(
    config: ExperimentConfig, arch: Architecture, seed: int, kd: bool, out: Path | None
) -> TrialResult:
    """Run one trial of `arch` exactly as the search would (same data, teacher, recipe and,
    given the trial's seed, the same numbers); with `out`, save the student there."""
    data, teacher, device = prepare(config)
    stages = find_stages(teacher.model, data.example_input())
    check_fits(arch, stages, config.teacher.model)
    ctx = TrialContext(
        teacher.model, stages, data, teacher.train_logits, config.training, config.latency, device
    )
    result, model = run_trial(arch, ctx, seed, kd=kd)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"teacher": teacher.card.model, "seed": seed, "kd": kd, **result.model_dump()}
        save_student(out / "model.safetensors", model, arch, meta)
    return result
