"""The local controller: the run's Optuna study, driven by ask and tell, one trial at a time."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from automl.constraints import Rejected
from automl.controllers import study as studies
from automl.controllers.base import (
    Controller,
    ControllerTimes,
    OnComplete,
    OnRecords,
    SearchProgress,
)
from automl.controllers.samplers import create_sampler
from automl.early_stop import RUNGS_ATTR, EpochReport, RungTable
from automl.objectives import values
from automl.student.files import student_bytes
from automl.trial import Reporter, TrialRecord, TrialStopped, run_trial


class OptunaController(Controller):
    def run(
        self, on_complete: OnComplete, on_records: OnRecords, progress: SearchProgress
    ) -> ControllerTimes:
        start = time.perf_counter()
        study = studies.open_study(self.study_ref)
        studies.fail_interrupted(study)
        study.sampler = create_sampler(
            self.config.search.sampler, studies.resumed_seed(study, self.config.seed)
        )
        budget = self.config.search.budget
        completed = studies.trained(study)
        self.time_budget.durations.extend(studies.trial_seconds(study))
        failures = studies.FailureBudget(
            self.config.search.max_failed_trials, studies.failed(study)
        )
        limits = self.context.limits
        rejections = studies.RejectionBudget(budget, studies.rejected(study))
        table = studies.rung_table(study, self.config.search, self.config.training.epochs)
        trial_seconds = 0.0
        progress.start(budget, completed)
        try:
            while completed < budget and self.time_budget.allows():
                trial = study.ask()
                arch = self.space.sample(trial)
                trial.set_user_attr("architecture", arch.model_dump(mode="json"))
                t0 = time.perf_counter()
                try:
                    result, model = run_trial(
                        arch,
                        self.context,
                        self.config.seed + trial.number,
                        None if table is None else _reporter(table, trial),
                    )
                except Rejected as exc:  # measured, not trained: the sampler learns from it
                    trial_seconds += time.perf_counter() - t0
                    trial.set_user_attr("result", exc.scores.model_dump())
                    studies.tell_limits(trial, limits, exc.scores, was_trained=False)
                    study.tell(trial, values(exc.scores))
                    on_records(studies.records(study))
                    rejections.record(exc.reason)
                    continue
                except TrialStopped as exc:  # counts toward the budget, as Optuna's pruned do
                    elapsed = time.perf_counter() - t0
                    trial_seconds += elapsed
                    self.time_budget.record(elapsed)
                    reason = (
                        f"stopped early by {self.config.search.early_stop} after epoch "
                        f"{exc.epoch} (val_accuracy {exc.val_accuracy:.4f})"
                    )
                    trial.set_user_attr("error", reason)
                    study.tell(trial, state=TrialState.PRUNED)
                    completed += 1
                    front = on_records(studies.records(study))
                    progress.update(
                        completed, len(front), _best(front), f"#{trial.number}: {reason}"
                    )
                    continue
                except Exception as exc:  # a failed trial is recorded; the search goes on
                    elapsed = time.perf_counter() - t0
                    trial_seconds += elapsed
                    self.time_budget.record(elapsed)
                    trial.set_user_attr("error", studies.error_text(exc))
                    study.tell(trial, state=TrialState.FAIL)
                    on_records(studies.records(study))
                    failures.record(studies.error_text(exc))
                    continue
                elapsed = time.perf_counter() - t0
                trial_seconds += elapsed
                self.time_budget.record(elapsed)
                trial.set_user_attr("result", result.model_dump())
                broken = studies.tell_limits(trial, limits, result, was_trained=True)
                on_complete(trial.number, arch, result, student_bytes(model, arch))
                study.tell(trial, values(result))
                completed += 1
                front = on_records(studies.records(study))
                progress.update(
                    completed,
                    len(front),
                    _best(front),
                    f"#{trial.number}: acc {result.val_accuracy:.4f} "
                    f"{result.latency_ms:.3f} ms {result.size_bytes / 1000:.0f} kB"
                    + (f" (infeasible: {broken})" if broken else ""),
                )
        finally:
            progress.close()
        return ControllerTimes(
            time.perf_counter() - start, trial_seconds, type(study.sampler).__name__
        )

    def records(self) -> list[TrialRecord]:
        return studies.records(studies.open_study(self.study_ref))


def _best(front: list[TrialRecord]) -> float:
    return max((r.result.val_accuracy for r in front if r.result), default=0.0)


def _reporter(table: RungTable, trial: optuna.Trial) -> Reporter:
    """Early stopping for one trial: its rung reports go to `table`, which decides, and to the
    trial's `rungs` attribute, from which a resumed search rebuilds the table."""

    def report(epoch: EpochReport) -> bool:
        stop = table.report(trial.number, epoch)
        if epoch.epoch in table.rung_epochs:
            trial.set_user_attr(RUNGS_ATTR, table.attr(trial.number))
        return stop

    return report
