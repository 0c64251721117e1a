"""The controller interface: schedule trials of one search until the budget is reached."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from automl.config import ExperimentConfig
from automl.controllers.study import StudyRef
from automl.controllers.time_budget import TimeBudget
from automl.trial import TrialContext, TrialRecord, TrialResult
from search_spaces import Architecture, BoundSearchSpace

# Called for each completed trial before it is recorded as complete: (trial number,
# architecture, result, the deployed student as safetensors bytes from
# `student.files.student_bytes`). Saves the weights.
OnComplete = Callable[[int, Architecture, TrialResult, bytes], None]
# Called after any trial ends, with every record so far; returns the current Pareto front.
OnRecords = Callable[[list[TrialRecord]], list[TrialRecord]]


class SearchProgress(Protocol):
    """What a controller tells the user as trials end (`automl.run.progress` draws it)."""

    def start(self, budget: int, done: int) -> None: ...
    def update(self, done: int, front_size: int, best_accuracy: float, last: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class ControllerTimes:
    """One session of a controller: its time and the sampler that drew its trials."""

    wall_seconds: float
    trial_seconds: float  # time inside run_trial, summed (spread over slots when concurrent)
    sampler: str  # the Optuna sampler's class name

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.wall_seconds - self.trial_seconds)


class Controller(ABC):
    """Runs `run_trial` on sampled architectures until `config.search.budget` trials have
    completed, resuming whatever the study already holds. Failed trials are recorded with their
    reason and do not count toward the budget (`study.FailureBudget`); each trial's seed is
    `config.seed + trial number`. The sampler is `search.sampler` from the sampler registry.
    No trial starts that `time_budget` does not allow, and each trained trial's wall seconds
    are recorded there."""

    def __init__(
        self,
        config: ExperimentConfig,
        study: StudyRef,
        space: BoundSearchSpace,
        context: TrialContext,
        time_budget: TimeBudget | None = None,
    ) -> None:
        self.config = config
        self.study_ref = study
        self.space = space
        self.context = context
        self.time_budget = time_budget or TimeBudget(None)

    @abstractmethod
    def run(
        self, on_complete: OnComplete, on_records: OnRecords, progress: SearchProgress
    ) -> ControllerTimes:
        """Run to the budget; returns the time spent."""

    @abstractmethod
    def records(self) -> list[TrialRecord]:
        """Every trial of this run so far, by trial number."""
