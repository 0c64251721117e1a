"""The run directory: a contract that later commands and checks rely on.

study.db      Optuna study (name in run.json)
run.json      RunDocument: resolved config, teacher figures, versions, seed, sessions
trials.csv    one row per trial
pareto.json   ParetoDocument: teacher, hypervolume, reference point, front
report.html   self-contained plotly report
models/       each front model: trial_NNNN.safetensors + trial_NNNN.json
onnx/         after `report`: the deployed form of the teacher and of each front model
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from automl.controllers.study import StudyRef
from automl.errors import UserError
from automl.files import write_file
from automl.run.documents import (
    ParetoDocument,
    RunDocument,
    read_document,
    write_document,
)
from automl.trial import TrialRecord, TrialResult

RESULT_COLUMNS = [
    name for name in TrialResult.model_fields if name not in ("test_accuracy", "epochs")
]  # test accuracy is shown for the front only


FILES = ("run.json", "study.db", "trials.csv", "pareto.json", "report.html")
FOLDERS = ("models", "onnx", "export")


def trial_key(number: int) -> str:
    """How a trial names its files: trial_0007."""
    return f"trial_{number:04d}"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    study_db = property(lambda self: self.path / "study.db")
    run_json = property(lambda self: self.path / "run.json")
    trials_csv = property(lambda self: self.path / "trials.csv")
    pareto_json = property(lambda self: self.path / "pareto.json")
    report_html = property(lambda self: self.path / "report.html")
    models = property(lambda self: self.path / "models")
    onnx = property(lambda self: self.path / "onnx")

    def artefacts(self) -> list[Path]:
        """What a search, finalize, report or pick wrote here that exists now (a folder that
        holds any of these holds a run, finished or not)."""
        found = [self.path / n for n in FILES if (self.path / n).exists()]
        for name in FOLDERS:  # an empty one holds nothing to lose
            folder = self.path / name
            if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
                found.append(folder)
        return found

    def check_kinds(self) -> None:
        """Raise UserError naming the first part of the layout that exists as the wrong kind
        (a folder where a file belongs, or the reverse), before a command works on the run."""
        for name in FILES:
            if (self.path / name).is_dir():
                raise UserError(
                    f"{self.path / name} is a folder where the run's file belongs; restore "
                    "the file or move the folder away"
                )
        for name in FOLDERS:
            if (self.path / name).exists() and not (self.path / name).is_dir():
                raise UserError(
                    f"{self.path / name} is a file where the run's folder belongs; restore "
                    "the folder or move the file away"
                )

    def study(self, name: str) -> StudyRef:
        return StudyRef(self.study_db, name, self.path)

    def weights_path(self, number: int) -> Path:
        return self.models / f"{trial_key(number)}.safetensors"

    def weights_name(self, number: int) -> str:
        """The weights file relative to the run directory, as pareto.json holds it."""
        return str(self.weights_path(number).relative_to(self.path))

    def create(self) -> None:
        self.models.mkdir(parents=True, exist_ok=True)

    def read_run(self) -> RunDocument:
        return read_document(self.run_json, RunDocument)

    def write_run(self, doc: RunDocument) -> None:
        write_document(self.run_json, doc)

    def read_pareto(self) -> ParetoDocument:
        return read_document(self.pareto_json, ParetoDocument)

    def write_pareto(self, doc: ParetoDocument) -> None:
        write_document(self.pareto_json, doc)

    def write_trials(self, records: list[TrialRecord]) -> None:
        flat = [r.architecture.flat() if r.architecture is not None else {} for r in records]
        arch_cols = list(dict.fromkeys(k for row in flat for k in row))
        extra_cols = list(dict.fromkeys(k for r in records for k in r.extra))
        columns = [
            "number",
            "state",
            *arch_cols,
            *RESULT_COLUMNS,
            *extra_cols,
            "error",
            "rejected",
        ]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for r, arch in zip(records, flat, strict=True):
            row: dict[str, Any] = {
                "number": r.number,
                "state": r.state,
                "error": r.error,
                "rejected": r.rejected,
            }
            row.update(arch)
            if r.result is not None:
                row.update({k: getattr(r.result, k) for k in RESULT_COLUMNS})
            row.update(r.extra)
            writer.writerow(row)
        write_file(self.trials_csv, text.getvalue())

    def prune_weights(self, keep: set[int]) -> None:
        """Delete saved weights of trials that are no longer on the front."""
        for path in self.models.glob("trial_*.safetensors"):
            number = int(path.stem.split("_")[1])
            if number not in keep:
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)

    def read_trial_points(self) -> list[dict[str, Any]]:
        """Completed trials from trials.csv: number plus the result columns, as numbers."""
        if not self.trials_csv.is_file():
            return []
        points = []
        with self.trials_csv.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("state") == "COMPLETE" and not row.get("rejected"):
                    points.append(
                        {"number": int(row["number"]), **{k: float(row[k]) for k in RESULT_COLUMNS}}
                    )
        return points
