"""The run's Optuna study, as both controllers use it, through Optuna's public API.

The study is the record a search is counted in: a trial is COMPLETE once its student is
saved and its objectives told, so the budget, `--resume` and a killed process all agree on
what is done.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import sqlalchemy
from optuna.trial import TrialState

from automl.config import SearchConfig
from automl.constraints import REJECTED_BEFORE_TRAINING, Limits
from automl.early_stop import RUNGS_ATTR, RungTable
from automl.objectives import DIRECTIONS
from automl.trial import TrialRecord, TrialResult
from search_spaces import Architecture

INTERRUPTED = "interrupted: the search process ended before this trial finished"
# User attributes that become extra trials.csv columns when a controller sets them.
EXTRA_ATTRS = ("node_id",)


class SearchFailed(RuntimeError):
    """Too many trials failed; the message carries the last error."""


@dataclass(frozen=True)
class StudyRef:
    """Where a run's study lives: an SQLite file, its study name, and a folder of the run that
    a controller may use for its own files (Ray Tune's experiments)."""

    db_path: Path
    name: str
    work_dir: Path

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the file, whatever its path holds (`?`, `%`, `#`): a SQLite
        URI filename, percent-encoded twice, as SQLAlchemy decodes the URL once and SQLite
        the URI once more. Plain concatenation put `runs/q?a` into the file `runs/q`."""
        path = quote(quote(str(self.db_path.resolve()), safe="/"), safe="/")
        return f"sqlite:///file:{path}?uri=true"


def open_storage(ref: StudyRef) -> optuna.storages.RDBStorage:
    """The study's storage, committing in SQLite's write-ahead log (see `_fast_commits`)."""
    storage = optuna.storages.RDBStorage(ref.url, engine_kwargs={"connect_args": {"timeout": 30}})
    _fast_commits(storage)
    return storage


def open_study(ref: StudyRef, storage: optuna.storages.RDBStorage | None = None) -> optuna.Study:
    """The run's multi-objective study, created on first use. Optuna's INFO lines (a study
    opened, a trial finished) are silenced: the tool reports its own progress."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=ref.name,
        storage=storage or open_storage(ref),
        directions=DIRECTIONS,
        load_if_exists=True,
    )


def study_problem(ref: StudyRef) -> str | None:
    """Why the study file at `ref` cannot be resumed (missing, not SQLite, damaged, or without
    this study), or None when it can. Reads only: the -wal and -shm files that SQLite makes
    to read a file it then refuses are removed again."""
    sidecars = [ref.db_path.with_name(ref.db_path.name + end) for end in ("-wal", "-shm")]
    existed = {p for p in sidecars if p.exists()}
    problem = _study_problem(ref)
    if problem is not None:
        for made in set(sidecars) - existed:
            made.unlink(missing_ok=True)
    return problem


def _study_problem(ref: StudyRef) -> str | None:
    if not ref.db_path.is_file():
        return f"{ref.db_path} is missing"
    try:
        with closing(sqlite3.connect(f"file:{ref.db_path.resolve()}?mode=ro", uri=True)) as con:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            names = {n for (n,) in con.execute("SELECT study_name FROM studies")}
    except sqlite3.DatabaseError as exc:
        return f"{ref.db_path} cannot be read as an Optuna study ({exc})"
    if check != "ok":
        return f"{ref.db_path} is damaged (SQLite's quick_check: {check})"
    if ref.name not in names:
        return f"{ref.db_path} holds no study named {ref.name!r} (it holds {sorted(names)})"
    return None


def resumed_seed(study: optuna.Study, seed: int) -> int:
    """Seed + trials so far: a resumed run samples from a stream of its own instead of
    repeating the first run's samples."""
    return seed + len(study.get_trials(deepcopy=False))


def count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def trained(study: optuna.Study) -> int:
    """What `search.budget` counts: trials whose students trained, to the end or until early
    stopping stopped them (PRUNED), as Optuna and Tune count pruned trials. A candidate
    rejected before training is COMPLETE, for the sampler, but trained for 0 epochs, and a
    failed trial trained nothing usable: neither counts."""
    return sum(r.trained or r.state == "PRUNED" for r in records(study))


def trial_seconds(study: optuna.Study) -> list[float]:
    """The wall seconds of each trial that trained (to the end, or until early stopping
    stopped it), from its start and end in the study: what a resumed search knows of how long
    a trial takes before it runs one."""
    return [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t, r in zip(study.get_trials(deepcopy=False), records(study), strict=True)
        if (r.trained or r.state == "PRUNED") and t.datetime_start and t.datetime_complete
    ]


def rejected(study: optuna.Study) -> int:
    """Candidates rejected before training so far."""
    return sum(r.state == "COMPLETE" and not r.trained for r in records(study))


def tell_limits(trial: optuna.Trial, limits: Limits, scores: Any, was_trained: bool) -> str:
    """Give a live trial its constraint values (Optuna's samplers read them) and, when it
    breaks a limit, the `rejected` attribute; returns that reason ('' when feasible)."""
    if not limits.any:
        return ""
    for key, value in limits.constraints(scores, was_trained).items():
        trial.set_constraint(key, value)
    reason = limits.broken(scores, was_trained)
    if reason:
        prefix = "" if was_trained else f"{REJECTED_BEFORE_TRAINING}: "
        trial.set_user_attr("rejected", prefix + reason)
    return reason


def rung_table(study: optuna.Study, search: SearchConfig, epochs: int) -> RungTable | None:
    """The early-stopping table of `search.early_stop` (None: none), holding what the study's
    trials reported at the rungs in earlier sessions (their `rungs` attribute)."""
    if search.early_stop == "none":
        return None
    table = RungTable(search.early_stop, epochs, search.reduction_factor)
    for t in study.get_trials(deepcopy=False):
        attr = t.user_attrs.get(RUNGS_ATTR)
        if isinstance(attr, dict):
            table.load_attr(t.number, attr)
    return table


def failed(study: optuna.Study) -> int:
    """Trials that failed with a reason; those a killed process left (`fail_interrupted`) do not
    count toward `search.max_failed_trials`."""
    return sum(
        "error" in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    )


def fail_interrupted(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed process become FAIL; `records` gives them the reason."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)


def enqueue(study: optuna.Study, fixed: list[dict[str, Any]]) -> int:
    """Queue a trial for each set of fixed parameters that no trial has been given yet, except
    failed ones (an interrupted trial is queued again). Both controllers' `study.ask()` takes
    queued trials first, in order. Returns how many were queued."""
    fail_interrupted(study)
    seen = [
        t.system_attrs.get("fixed_params")
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.FAIL
    ]
    queued = 0
    for params in fixed:
        if params not in seen:
            study.enqueue_trial(params)
            seen.append(params)
            queued += 1
    return queued


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study, by number."""
    return [_record(t) for t in study.get_trials(deepcopy=False)]


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    result = t.user_attrs.get("result")
    error = t.user_attrs.get("error", "")
    if t.state == TrialState.FAIL and not error:
        error = INTERRUPTED  # every other failure is recorded with its reason before it ends
    return TrialRecord(
        number=t.number,
        state=t.state.name,  # type: ignore[arg-type]
        architecture=stored_architecture(t.user_attrs.get("architecture")),
        result=TrialResult.model_validate(result) if result and t.state.is_finished() else None,
        error=error,
        extra={k: t.user_attrs[k] for k in EXTRA_ATTRS if k in t.user_attrs},
        rejected=t.user_attrs.get("rejected", ""),
    )


def stored_architecture(doc: dict[str, Any] | None) -> Architecture | None:
    """An architecture as a study stores it: the Architecture's JSON, or the flat form that runs
    written before techniques were plugins stored."""
    if doc is None:
        return None
    if "stages" in doc:
        return Architecture.model_validate(doc)
    return Architecture.from_flat(doc)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RejectionBudget:
    """Candidates rejected before training cost about a second each and do not count toward
    the budget; past `limit` of them the limits leave (almost) nothing, and the search stops
    with one message instead of sampling forever."""

    def __init__(self, budget: int, rejected: int = 0) -> None:
        self.limit = max(100, 10 * budget)
        self.rejected = rejected

    def record(self, reason: str) -> None:
        self.rejected += 1
        if self.rejected > self.limit:
            raise SearchFailed(
                f"{self.rejected} candidates were rejected before training, more than "
                f"{self.limit}: the search's limits leave almost nothing of the space (last: "
                f"{reason}); loosen search.max_latency_ms or search.max_size_kb, or narrow "
                "search_space to smaller students"
            )


class FailureBudget:
    """The failed-trial policy of every controller: a failed trial is recorded with its reason
    and the search goes on, until more than `search.max_failed_trials` have failed."""

    def __init__(self, limit: int, failed: int = 0) -> None:
        self.limit = limit
        self.failed = failed

    @property
    def exhausted(self) -> bool:
        return self.failed > self.limit

    def record(self, error: str) -> None:
        """Count one failure; raise SearchFailed once the budget is exhausted."""
        self.failed += 1
        if self.exhausted:
            raise SearchFailed(
                f"{self.failed} trials failed (search.max_failed_trials is {self.limit}); "
                f"last: {error}"
            )


def _fast_commits(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead log and synchronous=NORMAL: every commit survives a killed process (what
    --resume needs), without an fsync per parameter; per trial that saves tens of ms."""

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened so far lack the pragmas
    sqlalchemy.event.listen(storage.engine, "connect", pragmas)
