"""run.json and pareto.json as typed documents, written and read here only.

Format 3 (this version) gives the data split and the teacher seeds of their own
(`data.split_seed`, `teacher.seed`). Format 2 stored architectures as `Architecture` JSON and
named the techniques of the search space; its runs split the data and trained the teacher with
the search seed, which the upgrade writes into the new keys. Format 1 (no `format` key: runs
written before techniques were plugins) stored flat architectures (`stage0.channel_keep`, ...)
and used `LEGACY_TECHNIQUES`. Older runs are upgraded when read, so they open, report, export
and resume as they did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automl.compress import LEGACY_TECHNIQUES
from automl.config import ExperimentConfig
from automl.errors import UserError
from automl.files import write_json
from automl.objectives import OBJECTIVES, REFERENCE_POINT, normalised, normalised_space
from automl.pareto import hypervolume, non_dominated
from automl.trial import Scores, TrialRecord
from search_spaces import Architecture

FORMAT = 4
# runtime ("torch", "onnxruntime") -> "batch_N" -> milliseconds per call
Latencies = dict[str, dict[str, float]]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Deployed(_Doc):
    """An ONNX form that passed its check against PyTorch (see `automl.deploy.check`)."""

    path: str
    format: Literal["int8", "fp32"]
    onnx_bytes: int
    torch_test_accuracy: float
    onnx_test_accuracy: float
    reduce_range: bool
    fp32_onnx_bytes: int
    disagree: int | None = None  # test images whose class differs from PyTorch's (from 0.4)
    fallback: str | None = None  # why an int8 model ships as fp32 ONNX
    # int8: tensors quantized at the ranges and scales the student trained with (not calibrated)
    trained_tensors: int = 0


class DeployFailed(_Doc):
    error: str


class TeacherFigures(_Doc):
    """The teacher, measured as the students are; `report` adds the deployed figures."""

    model: str
    params: int
    macs: int
    size_bytes: int
    latency_ms: float
    val_accuracy: float
    test_accuracy: float
    fingerprint: str
    measured_latency_ms: Latencies | None = None
    deployed: Deployed | None = None


class FrontMember(Scores):
    """One student of the Pareto front: its scores, then these; `report` adds the fields after
    `weights`."""

    model_config = ConfigDict(extra="forbid")

    trial: int
    architecture: Architecture
    weights: str  # relative to the run directory
    measured_latency_ms: Latencies | None = None
    speedup: Latencies | None = None  # teacher's latency / this one's, same runtime and batch
    compression: float | None = None  # teacher's size_bytes / this one's
    onnx_compression: float | None = None  # teacher's ONNX bytes / this one's
    deployed: Deployed | DeployFailed | None = None
    proxy: Scores | None = None  # after `finalize`: the proxy search's figures of this model

    @property
    def shippable(self) -> bool:
        """Its ONNX form exists and passed its check (or it has not been re-measured yet)."""
        return not isinstance(self.deployed, DeployFailed)


class Measurement(_Doc):
    what: str
    batch_sizes: list[int]
    rounds: int
    calls_per_round: int
    warmup_per_round: int
    threads: int
    runtimes: dict[str, str]
    machine: str
    measured_at: str
    # Kendall tau of the front's search latency against its re-measured latency on the runtime
    # and batch the search timed: 1 when report ranks the front as the search did
    search_rank_tau: float | None = None


class Finalized(_Doc):
    """What `finalize` did: the proxy front retrained at full fidelity, the front rebuilt on
    those figures, and how well the proxy ranked the retrained models."""

    epochs: int
    train_images: int
    proxy_epochs: int
    proxy_train_images: int
    max_epochs: int | None = None  # training.final_max_epochs: smaller models trained longer
    models: int | None = None  # training.final_models: the most retrained
    trial_epochs: dict[int, int] = Field(default_factory=dict)  # epochs each model retrained for
    retrained: list[int]  # spread proxy-front trials in the front's order, then best_under's
    not_retrained: list[int] = Field(default_factory=list)  # beyond training.final_models
    # training.final_params_limits: each limit -> the trial retrained as the best under it
    best_under: dict[int, int] = Field(default_factory=dict)
    dropped: list[int]  # retrained, but dominated at full fidelity
    kendall_tau: float | None  # proxy vs full validation accuracy over `retrained`
    seconds: float

    def epochs_said(self) -> str:
        """The epochs the models retrained for, as a reader wants them: "3", or "3 to 10" when
        smaller models trained longer (`epochs` alone for documents without `trial_epochs`)."""
        low, high = (
            min(self.trial_epochs.values(), default=self.epochs),
            max(self.trial_epochs.values(), default=self.epochs),
        )
        return str(low) if low == high else f"{low} to {high}"


class ParetoDocument(_Doc):
    format: int = FORMAT
    teacher: TeacherFigures
    objectives: dict[str, Literal["maximize", "minimize"]]
    hypervolume: float
    hypervolume_space: str
    reference_point: dict[str, float]
    front: list[FrontMember]
    knee_trial: int | None = None
    measurement: Measurement | None = None
    finalized: Finalized | None = None

    def member(self, trial: int) -> FrontMember | None:
        return next((m for m in self.front if m.trial == trial), None)


class DataRecord(_Doc):
    name: str
    train: int
    val: int
    test: int
    preprocess: dict[str, Any]
    fingerprint: str


class Session(_Doc):
    """One invocation of `search` on the run (a first search, then each `--resume`)."""

    wall_seconds: float
    setup_seconds: float
    search_seconds: float
    trial_seconds: float
    controller_overhead_seconds: float
    controller_overhead_fraction: float
    teacher_seconds: float  # training on first use, else loading from the cache
    sampler: str | None = None  # the Optuna sampler's class (not recorded in format 1)


class RunDocument(_Doc):
    format: int = FORMAT
    config: ExperimentConfig
    study_name: str
    backend: str
    seed: int
    device: str
    teacher: TeacherFigures
    stages: list[dict[str, Any]]
    data: DataRecord
    versions: dict[str, str]
    status: Literal["running", "complete"]
    sessions: list[Session] = []
    wall_seconds: float | None = None
    # the config the run began with, flat (dotted key -> value), less what a resume may change:
    # a resume refuses a config that differs from it (not recorded before 0.1 format 4 runs)
    recipe: dict[str, Any] | None = None


def _upgrade_run(raw: dict[str, Any]) -> dict[str, Any]:
    config, space = raw.get("config") or {}, None
    if isinstance(config, dict):
        space = config.get("search_space") or {}
    if not isinstance(space, dict):
        return {**raw, "format": 1}  # nothing to upgrade: validation names the wrong type
    space = dict(space)
    space.setdefault("techniques", list(LEGACY_TECHNIQUES))
    return {**raw, "format": 1, "config": {**config, "search_space": space}}


def _upgrade_pareto(raw: dict[str, Any]) -> dict[str, Any]:
    members = raw.get("front") or []
    if not isinstance(members, list):
        return {**raw, "format": 1}  # nothing to upgrade: validation names the wrong type
    front = []
    for member in members:
        flat = member.get("architecture") if isinstance(member, dict) else None
        if isinstance(flat, dict) and "stages" not in flat:
            arch = Architecture.from_flat(flat, LEGACY_TECHNIQUES)
            member = {**member, "architecture": arch.model_dump(mode="json")}
        front.append(member)
    return {**raw, "format": 1, "front": front}


def _seeds_of_their_own(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 2 split the data and trained the teacher with the search seed; teacher
    augmentation was a random shift (`teacher.augment_shift`), now `data.augment`."""
    if not isinstance(raw.get("config"), dict):
        return raw  # nothing to upgrade: validation names the missing section
    config = dict(raw["config"])
    seed = config.get("seed", 0)
    data = {"type": "digits", **(config.get("data") or {})}
    data.setdefault("split_seed", seed)
    teacher = {k: v for k, v in (config.get("teacher") or {}).items() if k != "augment_shift"}
    teacher.setdefault("seed", seed)
    return {**raw, "config": {**config, "data": data, "teacher": teacher}}


def _torch_latency(raw: dict[str, Any]) -> dict[str, Any]:
    """Before format 4 the search timed PyTorch eager (`latency.runtime` did not exist); a
    resumed run keeps timing what its trials were timed on."""
    if not isinstance(raw.get("config"), dict):
        return raw  # nothing to upgrade: validation names the missing section
    config = dict(raw["config"])
    latency = {"runtime": "torch", **(config.get("latency") or {})}
    return {**raw, "config": {**config, "latency": latency}}


Doc = TypeVar("Doc", bound=BaseModel)
# Documents of format 1 (no `format` key) made readable as format 2 ...
_UPGRADES = {RunDocument: _upgrade_run, ParetoDocument: _upgrade_pareto}
# ... and documents of format 1 or 2 as this version's.
_UPGRADES_TO_3 = {RunDocument: _seeds_of_their_own}
# ... and documents of format 1 to 3 as format 4's.
_UPGRADES_TO_4 = {RunDocument: _torch_latency}


def read_document(path: Path, kind: type[Doc]) -> Doc:
    """Read `path` as a `kind`, upgrading formats 1 to 3; a missing, unreadable or foreign
    file, or one of a newer format, is a UserError (nothing is written)."""
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a file; restore the run's file") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{path} is not a {kind.__name__}: it nests too deeply") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a {kind.__name__} of this tool (not a JSON object)")
    written = raw.get("format")
    if "format" in raw and (not isinstance(written, int) or isinstance(written, bool)):
        raise UserError(
            f"{path} is not a {kind.__name__} of this tool (format: {str(written)[:40]!r} is "
            f"no format number; this version reads 1 to {FORMAT})"
        )
    if isinstance(written, int) and written > FORMAT:
        raise UserError(
            f"{path} is of format {written}, written by a newer version of this tool; this "
            f"version reads formats 1 to {FORMAT}: upgrade automl to open the run"
        )
    try:
        if "format" not in raw and kind in _UPGRADES:
            raw = _UPGRADES[kind](raw)
        if raw.get("format", FORMAT) < 3 and kind in _UPGRADES_TO_3:
            raw = _UPGRADES_TO_3[kind](raw)
        if raw.get("format", FORMAT) < 4 and kind in _UPGRADES_TO_4:
            raw = _UPGRADES_TO_4[kind](raw)
        return kind.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top)"
        raise UserError(
            f"{path} is not a {kind.__name__} of this tool ({where}: {first['msg']}; "
            f"{exc.error_count()} problem(s))"
        ) from None


def write_document(path: Path, doc: BaseModel) -> None:
    write_json(path, doc.model_dump(mode="json", exclude_none=True))


def front_of(records: list[TrialRecord], teacher: TeacherFigures) -> list[TrialRecord]:
    """Completed trials within the search's limits that no other such trial dominates, by
    trial number."""
    done = [r for r in records if r.trained and not r.rejected and r.result is not None]
    if not done:
        return []
    idx = non_dominated(normalised([r.result for r in done], teacher))
    return sorted((done[i] for i in idx), key=lambda r: r.number)


def pareto_document(
    records: list[TrialRecord], teacher: TeacherFigures, weights: Callable[[int], str]
) -> ParetoDocument:
    """The front of `records` and its hypervolume; `weights(n)` names trial n's weights file."""
    front = front_of(records, teacher)
    points = normalised([r.result for r in front], teacher)
    return ParetoDocument(
        teacher=teacher,
        objectives={o.name: o.direction for o in OBJECTIVES},
        hypervolume=hypervolume(points, REFERENCE_POINT),
        hypervolume_space=normalised_space(),
        reference_point={o.name: o.reference(getattr(teacher, o.name)) for o in OBJECTIVES},
        front=[
            FrontMember(
                trial=r.number,
                architecture=r.architecture,
                **r.result.model_dump(exclude={"epochs"}),
                weights=weights(r.number),
            )
            for r in front
            if r.result is not None and r.architecture is not None
        ],
    )


def front_points(pareto: ParetoDocument) -> np.ndarray:
    """The front in the normalised space (for the hypervolume and checks)."""
    return normalised(pareto.front, pareto.teacher)
