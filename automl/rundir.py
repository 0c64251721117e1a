"""The run directory: a contract that later commands and checks rely on.

study.db      Optuna study (name in run.json)
run.json      resolved config, teacher figures, versions, seed, timings
trials.csv    one row per trial
pareto.json   teacher, hypervolume, reference point, front
report.html   self-contained plotly report
models/       each front model: trial_NNNN.safetensors + trial_NNNN.json
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl.pareto import hypervolume, non_dominated
from automl.trial import TrialResult

TRIAL_COLUMNS = ["number", "state"]
RESULT_COLUMNS = ["val_accuracy", "latency_ms", "size_bytes", "params", "macs", "train_seconds"]


@dataclass
class TrialRecord:
    """One trial as every backend reports it."""

    number: int
    state: str  # COMPLETE, FAIL, PRUNED (stopped early), RUNNING
    architecture: dict[str, Any] | None = None  # Architecture.flat()
    result: TrialResult | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # backend columns, e.g. node_id


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    study_db = property(lambda self: self.path / "study.db")
    run_json = property(lambda self: self.path / "run.json")
    trials_csv = property(lambda self: self.path / "trials.csv")
    pareto_json = property(lambda self: self.path / "pareto.json")
    report_html = property(lambda self: self.path / "report.html")
    models = property(lambda self: self.path / "models")

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.study_db.resolve()}"

    def weights_path(self, number: int) -> Path:
        return self.models / f"trial_{number:04d}.safetensors"

    def create(self) -> None:
        self.models.mkdir(parents=True, exist_ok=True)

    def read_run(self) -> dict[str, Any]:
        return json.loads(self.run_json.read_text())

    def write_json(self, path: Path, doc: dict[str, Any]) -> None:
        """Write atomically, so a killed process never leaves half a file."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")
        os.replace(tmp, path)

    def write_trials(self, records: list[TrialRecord]) -> None:
        arch_cols: list[str] = []
        extra_cols: list[str] = []
        for r in records:
            for key in r.architecture or {}:
                if key not in arch_cols:
                    arch_cols.append(key)
            for key in r.extra:
                if key not in extra_cols:
                    extra_cols.append(key)
        columns = TRIAL_COLUMNS + arch_cols + RESULT_COLUMNS + extra_cols + ["error"]
        tmp = self.trials_csv.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for r in records:
                row: dict[str, Any] = {"number": r.number, "state": r.state, "error": r.error}
                row.update(r.architecture or {})
                if r.result is not None:
                    row.update({k: getattr(r.result, k) for k in RESULT_COLUMNS})
                row.update(r.extra)
                writer.writerow(row)
        os.replace(tmp, self.trials_csv)

    def prune_weights(self, keep: set[int]) -> None:
        """Delete saved weights of trials that are no longer on the front."""
        for path in self.models.glob("trial_*.safetensors"):
            number = int(path.stem.split("_")[1])
            if number not in keep:
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)


def minimisation_objectives(results: list[TrialResult], teacher: dict[str, Any]) -> np.ndarray:
    """(n, 3): 1 - val_accuracy, latency and size as fractions of the teacher's."""
    return np.array(
        [
            [
                1.0 - r.val_accuracy,
                r.latency_ms / teacher["latency_ms"],
                r.size_bytes / teacher["size_bytes"],
            ]
            for r in results
        ],
        dtype=float,
    ).reshape(-1, 3)


# In the normalised space: zero accuracy, the teacher's latency, the teacher's size.
REFERENCE_POINT = np.array([1.0, 1.0, 1.0])


def front_of(records: list[TrialRecord], teacher: dict[str, Any]) -> list[TrialRecord]:
    """Completed trials that no other completed trial dominates, by trial number."""
    done = [r for r in records if r.state == "COMPLETE" and r.result is not None]
    if not done:
        return []
    idx = non_dominated(minimisation_objectives([r.result for r in done], teacher))
    return sorted((done[i] for i in idx), key=lambda r: r.number)


def pareto_document(
    records: list[TrialRecord], teacher: dict[str, Any], run_dir: RunDir
) -> dict[str, Any]:
    """The content of pareto.json."""
    front = front_of(records, teacher)
    points = minimisation_objectives([r.result for r in front], teacher)
    return {
        "teacher": teacher,
        "objectives": {
            "val_accuracy": "maximize",
            "latency_ms": "minimize",
            "size_bytes": "minimize",
        },
        "hypervolume": hypervolume(points, REFERENCE_POINT),
        "hypervolume_space": "[1 - val_accuracy, latency_ms / teacher.latency_ms, "
        "size_bytes / teacher.size_bytes]",
        "reference_point": {
            "val_accuracy": 0.0,
            "latency_ms": teacher["latency_ms"],
            "size_bytes": teacher["size_bytes"],
        },
        "front": [
            {
                "trial": r.number,
                "architecture": r.architecture,
                **r.result.model_dump(exclude={"epochs"}),
                "weights": str(run_dir.weights_path(r.number).relative_to(run_dir.path)),
            }
            for r in front
            if r.result is not None
        ],
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
