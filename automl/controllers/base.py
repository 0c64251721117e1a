"""The controller interface: schedule trials of one search until the budget is reached."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from automl.config import ExperimentConfig
from automl.rundir import RunDir, TrialRecord
from automl.trial import TrialContext, TrialResult
from search_spaces import Architecture, BoundSearchSpace

# Called by a controller for each completed trial, before it is recorded as complete:
# (trial number, architecture, result, the deployed student as safetensors bytes, from
# student_io.student_bytes) -> None. Saves the weights.
OnComplete = Callable[[int, Architecture, TrialResult, bytes], None]
# Called after any trial ends, with every record so far; returns the current Pareto front.
OnRecords = Callable[[list[TrialRecord]], list[TrialRecord]]


@dataclass
class ControllerTimes:
    wall_seconds: float
    trial_seconds: float  # time inside run_trial, summed

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.wall_seconds - self.trial_seconds)


class SearchFailed(RuntimeError):
    """Too many trials failed; the message carries the last error."""


class Controller(ABC):
    """Runs `run_trial` on sampled architectures until `config.search.budget` trials have
    completed, resuming whatever the run directory already holds. Failed trials are
    recorded with their reason and do not count toward the budget."""

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: RunDir,
        space: BoundSearchSpace,
        context: TrialContext,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.space = space
        self.context = context

    @abstractmethod
    def run(self, on_complete: OnComplete, on_records: OnRecords, progress) -> ControllerTimes:
        """Run to the budget; returns the time spent."""

    @abstractmethod
    def records(self) -> list[TrialRecord]:
        """Every trial of this run so far, by trial number."""

    @property
    @abstractmethod
    def study_name(self) -> str:
        """The name under which the run's trials are stored."""
