"""The local controller: an Optuna multi-objective study in SQLite, driven by ask and tell."""

from __future__ import annotations

import time

import optuna
import sqlalchemy
from optuna.trial import TrialState

from automl.controllers.base import Controller, ControllerTimes, SearchFailed
from automl.rundir import RunDir, TrialRecord
from automl.student_io import student_bytes
from automl.trial import TrialResult, TrialStopped, run_trial

DIRECTIONS = ["maximize", "minimize", "minimize"]  # val_accuracy, latency_ms, size_bytes
INTERRUPTED = "interrupted: the search process ended before this trial finished"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known: tpe, nsga2, random")


class OptunaController(Controller):
    @property
    def study_name(self) -> str:
        return self.config.name

    def _study(self) -> optuna.Study:
        study = open_study(self.run_dir, self.study_name)
        # A resumed run draws from a fresh stream, so it does not repeat the first run's samples.
        study.sampler = make_sampler(self.config.search.sampler, resumed_seed(study, self.config))
        return study

    def run(self, on_complete, on_records, progress) -> ControllerTimes:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        start = time.perf_counter()
        study = self._study()
        fail_interrupted(study)
        budget = self.config.search.budget
        completed = _count(study, TrialState.COMPLETE)
        failed = _count(study, TrialState.FAIL)
        trial_seconds = 0.0
        progress.start(budget, completed)
        try:
            while completed < budget:
                trial = study.ask()
                arch = self.space.sample(trial)
                trial.set_user_attr("architecture", arch.flat())
                t0 = time.perf_counter()
                try:
                    result, model = run_trial(arch, self.context, self.config.seed + trial.number)
                except TrialStopped as exc:
                    trial_seconds += time.perf_counter() - t0
                    trial.set_user_attr("error", str(exc))
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                except Exception as exc:  # a failed trial is recorded; the search goes on
                    trial_seconds += time.perf_counter() - t0
                    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                    study.tell(trial, state=TrialState.FAIL)
                    failed += 1
                    if failed > self.config.search.max_failed_trials:
                        raise SearchFailed(
                            f"{failed} trials failed (search.max_failed_trials is "
                            f"{self.config.search.max_failed_trials}); last: {type(exc).__name__}: "
                            f"{exc}"
                        ) from exc
                    on_records(self.records(study))
                    continue
                trial_seconds += time.perf_counter() - t0
                trial.set_user_attr("result", result.model_dump())
                on_complete(trial.number, arch, result, student_bytes(model, arch))
                study.tell(trial, [result.val_accuracy, result.latency_ms, result.size_bytes])
                completed += 1
                front = on_records(self.records(study))
                best = max(r.result.val_accuracy for r in front if r.result is not None)
                progress.update(
                    completed,
                    len(front),
                    best,
                    f"#{trial.number}: acc {result.val_accuracy:.4f} "
                    f"{result.latency_ms:.3f} ms {result.size_bytes / 1024:.0f} KiB",
                )
        finally:
            progress.close()
        return ControllerTimes(time.perf_counter() - start, trial_seconds)

    def records(self, study: optuna.Study | None = None) -> list[TrialRecord]:
        return study_records(study or self._study())


def open_study(run_dir: RunDir, name: str) -> optuna.Study:
    """The run's multi-objective study in its SQLite file, created on first use."""
    return optuna.create_study(
        study_name=name, storage=open_storage(run_dir), directions=DIRECTIONS, load_if_exists=True
    )


def open_storage(run_dir: RunDir) -> optuna.storages.RDBStorage:
    storage = optuna.storages.RDBStorage(
        run_dir.storage_url, engine_kwargs={"connect_args": {"timeout": 30}}
    )
    _fast_commits(storage)
    return storage


def resumed_seed(study: optuna.Study, config) -> int:
    """Seed + trials so far: a resumed run samples from a stream of its own."""
    return config.seed + len(study.get_trials(deepcopy=False))


def study_records(study: optuna.Study) -> list[TrialRecord]:
    return [_record(t) for t in study.get_trials(deepcopy=False)]


# User attributes that become extra trials.csv columns when a backend sets them.
EXTRA_ATTRS = ("node_id",)


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    result = t.user_attrs.get("result")
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        architecture=t.user_attrs.get("architecture"),
        result=TrialResult.model_validate(result) if result and t.state.is_finished() else None,
        error=t.user_attrs.get("error", ""),
        extra={k: t.user_attrs[k] for k in EXTRA_ATTRS if k in t.user_attrs},
    )


def _fast_commits(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead log and synchronous=NORMAL: every commit survives a killed process (what
    --resume needs), without an fsync per parameter; per trial that saves tens of ms."""

    def pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # connections opened so far lack the pragmas
    sqlalchemy.event.listen(storage.engine, "connect", pragmas)


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def fail_interrupted(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed process are marked failed, with the reason."""
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "error", INTERRUPTED)
        storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
