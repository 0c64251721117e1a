"""The library face: a search from Python, a finished run as an object, a model picked from it.

    import automl

    run = automl.search("configs/digits.yaml", budget=20)   # or config=None: the defaults
    picked = run.pick(max_latency_ms=1.0)                  # the most accurate that fits
    picked.export("out/model")                             # ONNX, weights, card

Every command of `cli.py` is a few lines over these functions: the same run directories, the
same files and the same `UserError` messages. What a search is given here as keyword
arguments is what the command's flags give: `budget=`, `time_budget=`, `epochs=`, `seed=`,
`sampler=`, `backend=`, `address=`, `max_concurrent=`, `cpus_per_trial=`, `gpus_per_trial=`,
`early_stop=`, `name=`, or any config key in dotted form (`**{"training.lr": 0.01}`).
"""

from __future__ import annotations

import copy
import logging
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from automl.config import (
    ExperimentConfig,
    flag_of,
    load_config,
    set_dotted,
    validate_config,
)
from automl.deploy.pick import Constraints, Figures, choose
from automl.errors import UserError
from automl.run.documents import Finalized, FrontMember, ParetoDocument, TeacherFigures
from automl.run.finished import SearchRun, open_search_run
from automl.run.layout import trial_key
from automl.run.search import SearchSummary

log = logging.getLogger(__name__)

# the command-line flags of `search`, by their names here, and the config key each sets
FLAGS: dict[str, str] = {
    "budget": "search.budget",
    "epochs": "training.epochs",
    "seed": "seed",
    "sampler": "search.sampler",
    "out": "out",
    "name": "name",
    "backend": "search.backend",
    "address": "ray.address",
    "max_concurrent": "ray.max_concurrent",
    "cpus_per_trial": "ray.cpus_per_trial",
    "gpus_per_trial": "ray.gpus_per_trial",
    "early_stop": "search.early_stop",
    "time_budget": "search.time_budget",
}
CLI = str(Path(__file__).resolve().parent.parent / "cli.py")


class NoModelFits(UserError):
    """`Run.pick` found no front model within the limits; `closest` holds the nearest misses
    (figures, and how far each limit is missed: relative for latency and size, a fraction for
    accuracy)."""

    def __init__(self, constraints: Constraints, closest: list[tuple[Figures, dict]]) -> None:
        self.constraints, self.closest = constraints, closest
        lines = [f"no front model meets {constraints.describe()}; closest:"]
        for figures, miss in closest:
            misses = ", ".join(
                f"accuracy by {100 * v:.1f} points" if k == "accuracy" else f"{k} +{v:.0%}"
                for k, v in miss.items()
                if v
            )
            lines.append(f"  {figures.describe()}  (misses {misses})")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class MeasureOptions:
    """How `report` and `pick` time the front: the larger batch besides 1, and the number of
    interleaved rounds."""

    batch: int = 32
    rounds: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 1024:
            raise UserError(f"batch: {self.batch} is not allowed; use 1 to 1024")
        if self.rounds < 1:
            raise UserError(f"rounds: {self.rounds} is not allowed; use 1 or more")


@dataclass
class Run:
    """A run directory: its config, the teacher's figures, the Pareto front and every trial.
    Read from the directory's files (`run.json`, `pareto.json`, `trials.csv`) when opened."""

    path: Path
    _run: SearchRun = field(repr=False)
    summary: SearchSummary | None = None  # the session's figures, when this call searched

    @property
    def config(self) -> ExperimentConfig:
        return self._run.config

    @property
    def front(self) -> list[FrontMember]:
        """The Pareto front: trial, architecture, val and test accuracy, latency_ms,
        size_bytes, params, macs (and, after `report`, the deployed figures)."""
        return list(self._run.front)

    @property
    def teacher(self) -> TeacherFigures:
        return self._run.pareto.teacher

    @property
    def pareto(self) -> ParetoDocument:
        """pareto.json as read: the front, the teacher, the hypervolume, the measurement."""
        return self._run.pareto

    @property
    def hypervolume(self) -> float:
        return self._run.pareto.hypervolume

    @property
    def finalized(self) -> Finalized | None:
        """What `finalize` did, once it ran."""
        return self._run.pareto.finalized

    def member(self, trial: int) -> FrontMember:
        """Front trial `trial`; a UserError lists the front's trials when it is not there."""
        return self._run.member(trial)

    @property
    def trials(self) -> list[dict[str, Any]]:
        """Every trial, as trials.csv holds it: one dict per row (strings, as written)."""
        import csv

        path = self._run.run_dir.trials_csv
        if not path.is_file():
            return []
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def report(
        self, measure: MeasureOptions | None = None, say: Callable[[str], None] = log.info
    ) -> Run:
        """Re-measure the front and the teacher together (PyTorch and ONNX Runtime, batch 1
        and `measure.batch`), then rewrite pareto.json and report.html."""
        from automl.deploy.remeasure import rebuild_report

        rebuild_report(self._run, _settings(self._run, measure or MeasureOptions()), say)
        return self

    def pick(
        self,
        max_latency_ms: float | None = None,
        max_size_kb: float | None = None,
        min_accuracy: float | None = None,
        trial: int | None = None,
        measure: MeasureOptions | None = None,
        say: Callable[[str], None] = log.info,
    ) -> Picked:
        """The most accurate front model within the limits (ONNX Runtime batch-1 latency,
        model.onnx size in kB of 1000 bytes, validation accuracy), or front trial `trial`.
        Re-measures the front first when `report` has not. `NoModelFits` when none fits."""
        constraints = Constraints(max_latency_ms, max_size_kb, min_accuracy)
        check_constraints(constraints, trial)
        if trial is not None:
            self._run.member(trial)  # a UserError before any work
        if not all(m.measured_latency_ms is not None for m in self._run.front):
            say("the front has not been re-measured yet; running `report` first")
            self.report(measure, say)
        if trial is None:
            choice = choose(self._run.front, constraints)
            if choice.picked is None:
                raise NoModelFits(constraints, choice.closest)
            trial = choice.picked.trial
        return Picked(self, self._run.member(trial), constraints, measure or MeasureOptions())


def check_constraints(constraints: Constraints, trial: int | None = None) -> None:
    """A UserError for limits that are no limits (NaN, infinite, negative) or that come with a
    trial number."""
    if trial is not None and constraints != Constraints():
        raise UserError("--trial picks one model by number; drop the other constraints")
    for name, value in (
        ("--max-latency-ms", constraints.max_latency_ms),
        ("--max-size-kb", constraints.max_size_kb),
    ):
        if value is not None and not 0 < value < math.inf:
            raise UserError(f"{name} must be a positive number, got {value}")
    if constraints.min_accuracy is not None and not 0 <= constraints.min_accuracy <= 1:
        raise UserError(f"--min-accuracy is a fraction in [0, 1], got {constraints.min_accuracy}")


@dataclass
class Picked:
    """One front model chosen from a run: its figures, the PyTorch student, its export."""

    run: Run
    member: FrontMember
    constraints: Constraints
    measure: MeasureOptions
    folder: Path | None = None  # where `export` wrote it

    @property
    def trial(self) -> int:
        return self.member.trial

    @property
    def model(self) -> nn.Module:
        """The PyTorch student (deployed form: fake-quant folded, fp32), eval mode, CPU."""
        run = self.run._run
        model, _ = run.load_model(self.member, run.load_data())
        return model

    def export(self, out: str | Path | None = None) -> dict[str, Any]:
        """Write the export folder (model.onnx, model.safetensors, model.packed,
        architecture.json, card.json, card.md) to `out` (default RUN/export/trial_NNNN; a new
        or empty folder) and return the card."""
        from automl.deploy.export import check_out_dir, export_trial

        run = self.run._run
        folder = (
            Path(out) if out is not None else run.run_dir.path / "export" / trial_key(self.trial)
        )
        check_out_dir(folder)
        command = shlex.join(  # absolute paths: it works from any directory
            [
                "python",
                CLI,
                "train",
                str((folder / "architecture.json").resolve()),
                "--run",
                str(run.run_dir.path.resolve()),
                "--seed",
                str(run.trial_seed(self.trial)),
            ]
        )
        card = export_trial(run, self.trial, folder, _settings(run, self.measure), command)
        self.folder = folder
        return card


def _settings(run: SearchRun, measure: MeasureOptions):
    from automl.deploy.remeasure import MeasureSettings

    sizes = (1,) if measure.batch == 1 else (1, measure.batch)
    return MeasureSettings(
        batch_sizes=sizes, rounds=measure.rounds, threads=run.config.latency.threads
    )


def experiment_config(
    config: str | Path | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    teacher: str | Path | None = None,
    data: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    as_flags: bool = False,
) -> ExperimentConfig:
    """The config a search would run: `config` (a YAML path, a mapping as the YAML holds it,
    an ExperimentConfig, or None for configs/digits.yaml) with `teacher` (a timm model name,
    or a path to a checkpoint of the config's teacher model), `data` (a data section) and
    `overrides` (names of `FLAGS` or dotted config keys; None values are left out) applied,
    validated. An error names an override as a keyword (`budget=`), or with `as_flags` as
    the command's flag (`--budget`)."""
    if isinstance(teacher, nn.Module):
        raise UserError(
            "teacher: an nn.Module is not taken yet; give a timm model name, or save its "
            "state dict (torch.save(model.state_dict(), path)) and give the path with the "
            "timm model it belongs to in the config's teacher.model"
        )
    dotted: dict[str, Any] = {}
    said: dict[str, str] = {}
    for name, value in (overrides or {}).items():
        if value is not None:
            key = FLAGS.get(name, name)
            dotted[key] = value
            said[key] = flag_of(name) if as_flags else f"{name}="
    if teacher is not None:
        checkpoint = isinstance(teacher, Path) or Path(teacher).suffix in CHECKPOINTS
        key = "teacher.checkpoint" if checkpoint else "teacher.model"
        dotted[key], said[key] = (Path(teacher) if checkpoint else teacher), "teacher="
    if data is not None:
        dotted["data"], said["data"] = dict(data), "data="
    if config is None or isinstance(config, str | Path):
        return load_config(None if config is None else Path(config), dotted, said)
    if isinstance(config, ExperimentConfig):
        raw = config.model_dump(mode="json")
    else:
        raw = copy.deepcopy(dict(config))
    for key, value in dotted.items():
        set_dotted(raw, key, value)
    return validate_config(raw, "the config given", said)


CHECKPOINTS = (".pt", ".pth", ".safetensors")  # a teacher given as a path to one of these


def search(
    config: str | Path | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    teacher: str | Path | None = None,
    data: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    **overrides: Any,
) -> Run:
    """Run a search to its budget and return the run (see the module docstring for the
    arguments). The run directory is `out`, else the config's `out`, else runs/<name>; a
    folder that holds a run is refused (continue it with `resume`)."""
    from automl.run.search import run_search

    if out is not None:
        overrides["out"] = Path(out)
    cfg = experiment_config(config, teacher=teacher, data=data, overrides=overrides)
    return _opened(run_search(cfg, with_estimate=True))


def resume(
    path: str | Path,
    budget: int | None = None,
    address: str | None = None,
    *,
    requested: ExperimentConfig | None = None,
    **flags: Any,
) -> Run:
    """Continue the run at `path` with its stored config, to its budget or a larger `budget`
    (`address`: the Ray cluster, if it moved; `time_budget=` the time it may take in all).
    `requested` (a config) and `flags` (names of `FLAGS`) that differ from the stored config
    are refused, each named; so is a run whose config, data or teacher changed since it
    began."""
    from automl.run.search import resume_config, resume_conflicts, run_search

    stored = resume_config(Path(path), budget, address, flags.pop("time_budget", None))
    asked = {FLAGS.get(k, k): v for k, v in flags.items()}
    conflicts = resume_conflicts(stored, asked, requested)
    if conflicts:
        raise UserError(
            "--resume continues a run with its own config, which differs from this "
            f"command's: {'; '.join(conflicts)}. Drop those flags, or start a new run "
            "with another --name or --out (only --budget may raise the budget, and "
            "--address point a Ray run at its cluster)"
        )
    return _opened(run_search(stored, resume=True, with_estimate=True))


def _opened(summary: SearchSummary) -> Run:
    run = open_run(summary.run_dir)
    run.summary = summary
    return run


def finalize(
    path: str | Path,
    params_limits: Sequence[int] | None = None,
    say: Callable[[str], None] = log.info,
) -> Run:
    """Retrain the front of a proxy search at full fidelity and rebuild the front on those
    figures (resumable: models already retrained are kept)."""
    from automl.run.finalize import finalize as run_finalize

    run_finalize(open_search_run(Path(path)), say, params_limits=params_limits)
    return open_run(path)


def open_run(path: str | Path) -> Run:
    """The finished run at `path`; a UserError names what is missing or damaged."""
    run = open_search_run(Path(path))
    return Run(run.run_dir.path, run)


__all__ = [
    "FLAGS",
    "MeasureOptions",
    "NoModelFits",
    "Picked",
    "Run",
    "check_constraints",
    "experiment_config",
    "finalize",
    "open_run",
    "resume",
    "search",
]
