"""Open a finished run directory for the commands that follow a search (report, pick, train).

Everything here reads the run directory's files only (run.json, pareto.json, trials.csv,
models/), so it works the same on runs of every backend.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl.config import ExperimentConfig, validate_config
from automl.data import DataBundle, load_data
from automl.errors import UserError
from automl.rundir import RESULT_COLUMNS, RunDir
from automl.student_io import load_student
from search_spaces import Architecture
from teachers.cache import Teacher, get_teacher


@dataclass
class SearchRun:
    run_dir: RunDir
    doc: dict[str, Any]  # run.json
    config: ExperimentConfig
    pareto: dict[str, Any]  # pareto.json

    @property
    def front(self) -> list[dict[str, Any]]:
        return self.pareto["front"]

    def member(self, trial: int) -> dict[str, Any]:
        for m in self.front:
            if m["trial"] == trial:
                return m
        numbers = ", ".join(str(m["trial"]) for m in self.front) or "none"
        raise UserError(
            f"trial {trial} is not on the Pareto front of {self.run_dir.path} (only front "
            f"models are kept); front trials: {numbers}"
        )

    def trial_seed(self, trial: int) -> int:
        """The seed the search gave this trial (every backend uses seed + trial number)."""
        return self.config.seed + trial

    def load_data(self) -> DataBundle:
        """The run's data splits, checked against the fingerprint the run recorded."""
        data = load_data(self.config.data, self.config.seed)
        recorded = self.doc.get("data", {}).get("fingerprint")
        if recorded and recorded != data.fingerprint:
            raise UserError(
                f"the data found now differ from the data of run {self.run_dir.path} "
                f"(fingerprint {data.fingerprint}, recorded {recorded}); restore the run's "
                "data set or search again"
            )
        return data

    def load_teacher(self, data: DataBundle) -> Teacher:
        """The run's teacher from the teacher cache (trained again if the cache is gone)."""
        return get_teacher(self.config.teacher, data, torch.device("cpu"), self.config.seed)

    def load_model(
        self, member: dict[str, Any], data: DataBundle
    ) -> tuple[nn.Module, Architecture]:
        """A front member's deployed student (fp32, fake-quant folded), eval mode, CPU."""
        path = self.run_dir.path / member["weights"]
        if not path.is_file():
            raise UserError(
                f"weights of trial {member['trial']} are missing: {path} (the run directory "
                "is incomplete; search again or restore models/)"
            )
        try:
            return load_student(
                path, self.config.teacher.model, data.in_chans, data.num_classes, data.image_size
            )
        except Exception as exc:
            raise UserError(
                f"weights of trial {member['trial']} at {path} cannot be read: "
                f"{type(exc).__name__}: {exc}"
            ) from None


def open_search_run(path: Path) -> SearchRun:
    """The run at `path`; a UserError names what is missing or unreadable."""
    run_dir = RunDir(path)
    if not run_dir.path.is_dir():
        raise UserError(f"no run directory at {run_dir.path}")
    docs = []
    for file in (run_dir.run_json, run_dir.pareto_json):
        if not file.is_file():
            raise UserError(
                f"{file} is missing: {run_dir.path} is not a finished search run "
                "(finish it with `search --resume`)"
            )
        try:
            docs.append(json.loads(file.read_text()))
        except ValueError as exc:
            raise UserError(f"{file} is not valid JSON ({exc})") from None
    doc, pareto = docs
    if "config" not in doc or "front" not in pareto or "teacher" not in pareto:
        raise UserError(f"{run_dir.path} does not hold a run written by this tool")
    config = validate_config(doc["config"], str(run_dir.run_json))
    return SearchRun(run_dir, doc, config, pareto)


def read_trial_points(run_dir: RunDir) -> list[dict[str, Any]]:
    """Completed trials from trials.csv: number plus the result columns, as numbers."""
    if not run_dir.trials_csv.is_file():
        return []
    points = []
    with run_dir.trials_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("state") != "COMPLETE":
                continue
            point: dict[str, Any] = {"number": int(row["number"])}
            for key in RESULT_COLUMNS:
                point[key] = float(row[key])
            points.append(point)
    return points
