"""A whole search: config -> data -> teacher -> space -> controller -> run directory."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.compress.init import NO_REWIND
from automl.config import ExperimentConfig, validate_config
from automl.constraints import Limits
from automl.controllers import create_controller
from automl.controllers import study as studies
from automl.controllers.base import ControllerTimes, SearchProgress
from automl.controllers.time_budget import TimeBudget, parse_duration
from automl.data import DataBundle
from automl.errors import UserError
from automl.experiment import Experiment, library_versions, prepare
from automl.files import WriteFailed, write_file
from automl.measure import macs_and_params
from automl.paths import file_in_the_way
from automl.run.documents import (
    DataRecord,
    Finalized,
    RunDocument,
    Session,
    TeacherFigures,
    pareto_document,
)
from automl.run.estimate import at_once, estimate
from automl.run.finalize import finalize
from automl.run.finished import open_search_run
from automl.run.layout import RunDir
from automl.run.lock import run_lock
from automl.run.progress import make_progress
from automl.run.report import build_report, report_title, trial_points
from automl.student.files import write_student
from automl.trial import TrialRecord, TrialResult, search_latency_ms
from search_spaces import Architecture, BoundSearchSpace
from teachers.cache import fingerprint as teacher_fingerprint

log = logging.getLogger(__name__)


@dataclass
class SearchSummary:
    run_dir: Path
    completed: int
    front_size: int
    hypervolume: float
    wall_seconds: float
    controller_overhead_fraction: float
    finalized: Finalized | None = None
    best_val_accuracy: float | None = None  # of the front; None when no trial completed
    teacher_val_accuracy: float = 0.0
    epochs: int = 0  # distillation epochs of the front's figures (finalize's when finalized)
    time_stop: str = ""  # why search.time_budget stopped the search before its budget

    def gap_hint(self, threshold: float = 0.02) -> str | None:
        """The best student's val accuracy beside the teacher's and, when the gap exceeds
        `threshold`, what usually closes it."""
        if self.best_val_accuracy is None:
            return None
        gap = self.teacher_val_accuracy - self.best_val_accuracy
        line = (
            f"best student val {self.best_val_accuracy:.4f}, teacher "
            f"{self.teacher_val_accuracy:.4f} ({-100 * gap:+.1f} points)"
        )
        if gap <= threshold:
            return line
        return (
            f"{line}. Students trained for {self.epochs} epochs fall short of the teacher: more "
            "epochs (--epochs, or training.final_epochs after a proxy search) or wider students "
            "(a higher low end of search_space.channel_keep) usually close the gap"
        )


def teacher_figures(exp: Experiment) -> TeacherFigures:
    """The teacher measured exactly as the students are (same deployment device, threads,
    repeats)."""
    lat, teacher, data = exp.config.latency, exp.teacher, exp.data
    macs, params = macs_and_params(teacher.model, data.example_input(1))
    figures = TeacherFigures(
        model=teacher.card.model,
        params=params,
        macs=macs,
        size_bytes=teacher.card.size_bytes,
        latency_ms=search_latency_ms(teacher.model, False, data, lat),
        val_accuracy=teacher.card.val_accuracy,
        test_accuracy=teacher.card.test_accuracy,
        fingerprint=teacher.card.fingerprint,
    )
    teacher.model.cpu()
    return figures


def resume_config(
    run_path: Path,
    budget: int | None = None,
    address: str | None = None,
    time_budget: str | float | None = None,
) -> ExperimentConfig:
    """The config stored in the run directory at `run_path`, resumed there (wherever the run
    was first written); `budget` may raise its budget, `time_budget` set the time it may take
    in all (earlier sessions count), and `address` name the Ray cluster (it may have moved)."""
    run_dir = RunDir(run_path)
    if not run_dir.run_json.is_file():
        if run_dir.path.is_dir() and not run_dir.study_db.exists():
            raise UserError(
                f"--resume: nothing to resume at {run_dir.path}: its search stopped before its "
                "first trial (while the teacher trained, or the data loaded), so no run.json "
                "was written. Run the same command without --resume; a teacher that finished "
                "training is taken from its cache"
            )
        raise UserError(f"--resume: no run to resume at {run_dir.path} (run.json missing)")
    config = run_dir.read_run().config
    update: dict[str, object] = {"out": run_dir.path}
    if budget is not None and budget < config.search.budget:
        raise UserError(
            f"--resume --budget {budget} is below the run's budget of {config.search.budget} "
            "trials; a resume can raise the budget, not lower it (leave out --budget to finish "
            "the run as it was planned)"
        )
    search: dict[str, object] = {}
    if budget is not None:
        search["budget"] = budget
    if time_budget is not None:
        try:
            search["time_budget"] = parse_duration(time_budget)
        except ValueError as exc:
            raise UserError(f"--time-budget (search.time_budget): {exc}") from None
    if search:
        update["search"] = config.search.model_copy(update=search)
    if address is not None:
        update["ray"] = config.ray.model_copy(update={"address": address})
    raw = config.model_copy(update=update).model_dump(mode="json")
    return validate_config(raw, str(run_dir.run_json))


# may differ on --resume
RESUMABLE = ("out", "name", "search.budget", "search.time_budget", "ray.address")


def resume_conflicts(
    stored: ExperimentConfig,
    flags: dict[str, Any],
    requested: ExperimentConfig | None = None,
) -> list[str]:
    """What a `--resume` command asks for that the run's stored config does not hold: each
    given flag (dotted key -> value, None when not given) whose value differs, and, with a
    `requested` config (from --config), each of its settings that differs. The run directory,
    the budget and the Ray address may differ."""
    have = _flat(stored.model_dump(mode="json"))
    want = _flat(requested.model_dump(mode="json")) if requested is not None else {}
    want.update({k: v for k, v in flags.items() if v is not None})
    return [
        f"{key} is {have.get(key)!r} in the run, {want[key]!r} here"
        for key in sorted(want)
        if key not in RESUMABLE and have.get(key) != want[key]
    ]


# where things are, not what they are: a run moved to another machine may name other paths
# (the data's and the teacher's fingerprints still check what is found there)
RELOCATABLE = ("data.root", "teacher.cache_dir")


def recipe_of(config: ExperimentConfig) -> dict[str, Any]:
    """The config as run.json records what a run began with: flat, less what a resume may
    change (`RESUMABLE`, `RELOCATABLE`)."""
    flat = _flat(config.model_dump(mode="json"))
    return {k: v for k, v in flat.items() if k not in RESUMABLE + RELOCATABLE}


def check_unchanged(previous: RunDocument, config: ExperimentConfig, data: DataBundle) -> None:
    """Before a resumed run does any work: its config, data and teacher are those it began
    with, else a UserError names what changed (trials of two worlds in one study would be
    compared as one, and the front's weights pruned by the wrong figures)."""
    where = "the run directory's run.json"
    if previous.recipe is not None:
        now = recipe_of(config)
        changed = [
            f"{key} was {previous.recipe[key]!r}, is {now[key]!r}"
            for key in sorted(previous.recipe.keys() & now.keys())
            if previous.recipe[key] != now[key]
        ]
        if changed:
            raise UserError(
                f"--resume: the config in {where} differs from the one the run began with: "
                f"{'; '.join(changed)}. Restore it, or start a new search with another --name "
                "or --out"
            )
    if data.fingerprint != previous.data.fingerprint:
        raise UserError(
            f"--resume: the data found now differ from the data the run began with "
            f"(fingerprint {data.fingerprint}, recorded {previous.data.fingerprint}): files "
            "were added, removed or changed, or the data config was edited. Restore the run's "
            "data set, or start a new search with another --name or --out"
        )
    if previous.recipe is None:
        # written before runs recorded their recipe: its teacher fingerprint may be of an
        # older formula, so only the data are checked (this session records the recipe)
        log.info("%s records no recipe (an older run); its config is taken as it is", where)
        return
    teacher = teacher_fingerprint(config.teacher, data)
    if teacher != previous.teacher.fingerprint:
        raise UserError(
            f"--resume: the teacher's recipe differs from the one the run began with "
            f"(fingerprint {teacher}, recorded {previous.teacher.fingerprint}); restore the "
            "run's teacher config, or start a new search with another --name or --out"
        )


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def open_run(config: ExperimentConfig, resume: bool) -> RunDir:
    """The run directory, checked: a new search never writes over an existing run, and a
    resumed one needs its study, unless no trial of it ever ended (a search killed before its
    first trial has nothing to lose)."""
    run_dir = RunDir(config.run_dir)
    blocked = file_in_the_way(run_dir.path / "run.json")
    if blocked is not None:
        raise UserError(
            f"run directory {run_dir.path}: {blocked} is a file; choose another --out or --name"
        )
    if resume:
        run_dir.check_kinds()
    found = run_dir.artefacts()
    if not resume and found:
        held = ", ".join(p.name for p in found)
        hint = (
            "continue it with --resume, or"
            if run_dir.run_json.exists() and run_dir.study_db.exists()
            else "its results would be overwritten;"
        )
        raise UserError(
            f"run directory {run_dir.path} already holds a run ({held}); {hint} choose "
            "another --name or --out"
        )
    if resume and (run_dir.study_db.exists() or run_dir.trials_csv.exists()):
        problem = studies.study_problem(run_dir.study(config.name))
        if problem is not None:
            raise UserError(
                f"--resume: {problem}; the run's trials are recorded there, so it cannot be "
                "continued. Its results stay readable (trials.csv, pareto.json); start a new "
                "search with another --name or --out"
            )
    return run_dir


def _narrow_by_sensitivity(exp: Experiment, space: BoundSearchSpace) -> None:
    """With `search_space.sensitivity_max_drop`, narrow `space` by the teacher's cached
    sensitivity scan (made now when there is none: `automl.run.sensitivity`)."""
    ss = exp.config.search_space
    if ss.sensitivity_max_drop is None:
        return
    from automl.run import sensitivity as scans

    scan, path = scans.sensitivity(
        exp, ss.sensitivity_criterion, ss.sensitivity_epochs, scans.KEEPS
    )
    changes = scans.narrow(space, scan, ss.sensitivity_max_drop)
    log.info(
        "sensitivity (%s, at most %.3g accuracy lost per stage): %s",
        path.name,
        ss.sensitivity_max_drop,
        "; ".join(changes) or "no dimension narrowed",
    )


def run_search(
    config: ExperimentConfig,
    resume: bool = False,
    progress: SearchProgress | None = None,
    with_estimate: bool = False,
) -> SearchSummary:
    """Run a search to its budget and write the run directory. With `resume`, continue the
    run already there; pass the config from `resume_config`. Holds the run's lock throughout
    (`automl.run.lock`). With `with_estimate`, log (INFO) how long the trials left will take
    before they start (`automl.run.estimate`: a few seconds of measured training steps)."""
    wall_start = time.perf_counter()
    run_dir = open_run(config, resume)
    with run_lock(run_dir.path):
        try:
            return _search(config, resume, progress, run_dir, wall_start, with_estimate)
        except WriteFailed as exc:  # a full disk, a read-only mount: the study keeps the trials
            if not run_dir.run_json.is_file():
                raise  # the run had not begun: the same command starts it
            raise UserError(
                f"{exc}. The trials finished so far are kept in {run_dir.path}; then continue "
                "with --resume"
            ) from None


def _search(
    config: ExperimentConfig,
    resume: bool,
    progress: SearchProgress | None,
    run_dir: RunDir,
    wall_start: float,
    with_estimate: bool,
) -> SearchSummary:
    previous = run_dir.read_run() if resume else None
    check = None if previous is None else functools.partial(check_unchanged, previous, config)
    exp = prepare(config, check=check)
    teacher_seconds = time.perf_counter() - wall_start
    stages = exp.stages
    try:
        space = config.search_space.bind(stages)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _narrow_by_sensitivity(exp, space)
    queued = [_fixed_params(space, i, entry) for i, entry in enumerate(config.search.enqueue)]
    init = space.global_dims.get("init")
    if init is not None and init.allows("rewind") and not exp.teacher.has_rewind:
        raise UserError(f"search_space.init allows rewind: {NO_REWIND}")
    # a resumed run keeps its teacher's figures (the same teacher, checked above): measuring
    # its latency again would move the normalised objectives of the trials already done
    figures = previous.teacher if previous is not None else teacher_figures(exp)
    sessions = previous.sessions if previous else []
    run_dir.create()
    doc = RunDocument(
        config=config,
        study_name=config.name,
        backend=config.search.backend,
        seed=config.seed,
        device=str(exp.device),
        teacher=figures,
        stages=space.describe(),
        data=DataRecord(
            name=exp.data.name,
            train=len(exp.data.train),
            val=len(exp.data.val),
            test=len(exp.data.test),
            preprocess=exp.data.preprocess,
            fingerprint=exp.data.fingerprint,
        ),
        versions=library_versions(),
        status="running",
        sessions=sessions,
        recipe=previous.recipe if previous and previous.recipe else recipe_of(config),
    )
    run_dir.write_run(doc)
    # the search's limits reject candidates; finalize and `train` retrain what they are given
    trial_context = dataclasses.replace(exp.trial_context(), limits=Limits.of(config.search))
    controller = create_controller(
        config.search.backend,
        config,
        run_dir.study(config.name),
        space,
        trial_context,
        time_budget(config, len(exp.data.train), sessions, wall_start),
    )

    def on_complete(number: int, arch: Architecture, result: TrialResult, weights: bytes) -> None:
        meta = {"trial": number, "teacher": exp.teacher.card.model, **result.model_dump()}
        write_student(run_dir.weights_path(number), weights, arch, meta)

    def on_records(records: list[TrialRecord]) -> list[TrialRecord]:
        pareto = pareto_document(records, figures, run_dir.weights_name)
        run_dir.write_trials(records)
        run_dir.write_pareto(pareto)
        on_front = {m.trial for m in pareto.front}
        run_dir.prune_weights(on_front)
        return [r for r in records if r.number in on_front]

    study = studies.open_study(run_dir.study(config.name))
    studies.enqueue(study, queued)
    left = config.search.budget - studies.trained(study)
    if with_estimate and left > 0:
        try:
            log.info(estimate(space, trial_context, left).describe(at_once(config)))
        except Exception as exc:  # an estimate never stops a search (a corner may not train)
            log.info("no estimate of the search's duration: %s: %s", type(exc).__name__, exc)
    setup_seconds = time.perf_counter() - wall_start
    try:
        times = controller.run(on_complete, on_records, progress or make_progress())
    except studies.SearchFailed as exc:
        on_records(controller.records())
        raise UserError(
            f"{exc}. The trials so far are kept in {run_dir.path}: remove the cause, then "
            "--resume (or raise search.max_failed_trials)"
        ) from None

    records = controller.records()
    on_records(records)
    pareto = pareto_document(records, figures, run_dir.weights_name)
    write_file(
        run_dir.report_html,
        build_report(pareto, trial_points(records), report_title(config.name), config.latency),
    )
    doc.sessions.append(
        _session(times, time.perf_counter() - wall_start, setup_seconds, teacher_seconds)
    )
    doc.status = "complete"
    doc.wall_seconds = round(sum(s.wall_seconds for s in doc.sessions), 2)
    run_dir.write_run(doc)
    if config.search.finalize and config.training.is_proxy:
        pareto = finalize(open_search_run(run_dir.path), exp=exp)
    return SearchSummary(
        run_dir.path,
        sum(r.state == "COMPLETE" for r in records),
        len(pareto.front),
        pareto.hypervolume,
        doc.sessions[-1].wall_seconds,
        doc.sessions[-1].controller_overhead_fraction,
        pareto.finalized,
        max((m.val_accuracy for m in pareto.front), default=None),
        figures.val_accuracy,
        pareto.finalized.epochs if pareto.finalized else config.training.epochs,
        controller.time_budget.stopped,
    )


def time_budget(
    config: ExperimentConfig, train_images: int, sessions: list[Session], started: float
) -> TimeBudget:
    """The search's `TimeBudget`: this session began at `started` (perf_counter), earlier ones
    spent their wall seconds; after a proxy search, finalize's retraining is reserved."""
    training = config.training
    finalize_trials, fidelity = 0, 1.0
    if config.search.finalize and training.is_proxy:
        # final_models, or 5 where it is null (the whole front, whose size is not known yet)
        finalize_trials = (training.final_models or 5) + len(training.final_params_limits)
        epochs = (training.final_epochs or training.epochs) / training.epochs
        fidelity = epochs * train_images / (training.train_subset or train_images)
    return TimeBudget(
        config.search.time_budget,
        spent_before=sum(s.wall_seconds for s in sessions),
        finalize_trials=finalize_trials,
        fidelity=fidelity,
        started=started,
    )


def _fixed_params(space: BoundSearchSpace, i: int, entry: dict[str, object]) -> dict[str, object]:
    try:
        return space.fixed_params(entry)
    except ValueError as exc:
        raise UserError(f"search.enqueue.{i}: {exc}") from None


def _session(times: ControllerTimes, wall: float, setup: float, teacher: float) -> Session:
    search = times.wall_seconds
    return Session(
        wall_seconds=round(wall, 2),
        setup_seconds=round(setup, 2),
        search_seconds=round(search, 2),
        trial_seconds=round(times.trial_seconds, 2),
        controller_overhead_seconds=round(times.overhead_seconds, 2),
        controller_overhead_fraction=round(times.overhead_seconds / search, 4) if search else 0.0,
        teacher_seconds=round(teacher, 2),
        sampler=times.sampler,
    )
