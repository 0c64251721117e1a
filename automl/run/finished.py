"""Open a finished run directory for the commands that follow a search (report, pick, train).

Everything here reads the run directory's files only (run.json, pareto.json, models/), so it
works the same on runs of every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from automl.config import ExperimentConfig
from automl.data import DataBundle, load_data
from automl.errors import UserError
from automl.run.documents import FrontMember, ParetoDocument, RunDocument
from automl.run.layout import RunDir
from automl.student.files import load_student
from search_spaces import Architecture
from teachers.cache import Teacher, get_teacher


@dataclass
class SearchRun:
    run_dir: RunDir
    doc: RunDocument
    pareto: ParetoDocument

    @property
    def config(self) -> ExperimentConfig:
        return self.doc.config

    @property
    def front(self) -> list[FrontMember]:
        return self.pareto.front

    def member(self, trial: int) -> FrontMember:
        found = self.pareto.member(trial)
        if found is None:
            numbers = ", ".join(str(m.trial) for m in self.front) or "none"
            raise UserError(
                f"trial {trial} is not on the Pareto front of {self.run_dir.path} (only front "
                f"models are kept); front trials: {numbers}"
            )
        return found

    def trial_seed(self, trial: int) -> int:
        """The seed the search gave this trial (every controller uses seed + trial number)."""
        return self.config.seed + trial

    def load_data(self) -> DataBundle:
        """The run's data splits, checked against the fingerprint the run recorded."""
        data = load_data(self.config.data)
        recorded = self.doc.data.fingerprint
        if recorded != data.fingerprint:
            raise UserError(
                f"the data found now differ from the data of run {self.run_dir.path} "
                f"(fingerprint {data.fingerprint}, recorded {recorded}); restore the run's "
                "data set or search again"
            )
        return data

    def load_teacher(self, data: DataBundle) -> Teacher:
        """The run's teacher from the teacher cache (trained again if the cache is gone)."""
        return get_teacher(self.config.teacher, data, torch.device("cpu"))

    def weights_of(self, member: FrontMember) -> Path:
        """The member's weights file; a UserError when it is missing (before any work: every
        command that reads weights checks them all first)."""
        path = self.run_dir.path / member.weights
        if not path.is_file():
            raise UserError(
                f"weights of trial {member.trial} are missing: {path} (the run directory "
                "is incomplete; search again or restore models/)"
            )
        return path

    def check_weights(self) -> None:
        """Every front member's weights file is there (UserError naming the first missing)."""
        for member in self.front:
            self.weights_of(member)

    def load_model(self, member: FrontMember, data: DataBundle) -> tuple[nn.Module, Architecture]:
        """A front member's deployed student (fp32, fake-quant folded), eval mode, CPU."""
        path = self.weights_of(member)
        try:
            teacher = self.config.teacher
            return load_student(
                path,
                teacher.model,
                data.in_chans,
                data.num_classes,
                data.image_size,
                teacher.small_input,
            )
        except Exception as exc:
            raise UserError(
                f"weights of trial {member.trial} at {path} cannot be read: "
                f"{type(exc).__name__}: {exc}"
            ) from None


def open_search_run(path: Path) -> SearchRun:
    """The run at `path`; a UserError names what is missing or unreadable."""
    run_dir = RunDir(path)
    if not run_dir.path.is_dir():
        raise UserError(f"no run directory at {run_dir.path}")
    run_dir.check_kinds()
    for file in (run_dir.run_json, run_dir.pareto_json):
        if not file.is_file():
            raise UserError(
                f"{file} is missing: {run_dir.path} is not a finished search run "
                "(finish it with `search --resume`)"
            )
    return SearchRun(run_dir, run_dir.read_run(), run_dir.read_pareto())
