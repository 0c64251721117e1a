"""The Ray Tune controller: the same trial function, scheduled on a Ray cluster.

- Ray Tune's `OptunaSearch` samples the same search space (define-by-run), with the same
  sampler and objectives, into the same study as the local controller; `BudgetSearcher` around
  it stops sampling at the budget of completed trials and records each trial in the study.
- The trial context (teacher, its cached logits, the data) goes to the object store once,
  through `tune.with_parameters`; workers never load or train a teacher.
- A finished student's weights travel back through a small actor pinned to the driver's node
  (`WeightStore`), so no shared file system is needed.
- A trial whose worker dies is retried (`ray.max_retries`); a trial that fails on its own (an
  exception, a NaN loss) is recorded as failed and not retried.
- `search.early_stop` decides in the driver (`RungScheduler` over the run's RungTable), from
  each epoch's report, by the rule the local controller uses.
- `--resume` opens the same study again and runs a new Tune experiment beside the old ones
  (`<run>/ray/session-N`): completed trials live in the study and in models/, so none is lost.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pickle
import time
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from automl.config import RayConfig
from automl.constraints import Limits, Rejected
from automl.controllers import study as studies
from automl.controllers.base import (
    Controller,
    ControllerTimes,
    OnComplete,
    OnRecords,
    SearchProgress,
)
from automl.controllers.ray_connect import connect
from automl.controllers.samplers import create_sampler
from automl.early_stop import RUNGS_ATTR, EpochReport, RungTable
from automl.objectives import NAMES, OBJECTIVES
from automl.student.files import student_bytes
from automl.trial import TrialContext, TrialRecord, TrialResult, run_trial
from search_spaces import Architecture, BoundSearchSpace

MODES = [o.mode for o in OBJECTIVES]
WORKER_DIED = "the trial's worker failed and its retries ran out (ray.max_retries)"


@ray.remote(num_cpus=0)
class WeightStore:
    """Holds finished students' weights (safetensors bytes) until the driver writes them."""

    def __init__(self) -> None:
        self._blobs: dict[int, bytes] = {}

    def put(self, number: int, blob: bytes) -> None:
        self._blobs[number] = blob

    def pop(self, number: int) -> bytes | None:
        return self._blobs.pop(number, None)


def ray_trial(
    config: dict[str, Any],
    context: TrialContext,
    store: Any,
    seed: int,
    threads: int,
    use_gpu: bool,
    report_epochs: bool,
    plugins: tuple[str, ...],
) -> None:
    """The Tune trainable: one `run_trial` on a worker. Reports each epoch (an EpochReport) when
    a scheduler needs it, then one final result with every metric (or an `error`)."""
    for module in plugins:  # techniques registered outside the package
        importlib.import_module(module)
    torch.set_num_threads(threads)
    device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
    ctx = dataclasses.replace(context, device=device)
    number = int(config["trial_number"])
    arch = Architecture.model_validate_json(config["architecture"])
    base = {"trial_number": number, "node_id": ray.get_runtime_context().get_node_id()}
    teacher_calls = [0]

    def count_teacher_call(module: Any, *_: Any) -> None:
        if module is ctx.teacher:  # students are copies of the teacher and inherit the hook
            teacher_calls[0] += 1

    hook = ctx.teacher.register_forward_hook(count_teacher_call)
    reporting = [False]

    def reporter(epoch: EpochReport) -> bool:
        if epoch.epoch < ctx.training.epochs:  # the last epoch is in the final result
            reporting[0] = True
            tune.report({**base, **dataclasses.asdict(epoch)})
            reporting[0] = False
        return False  # the scheduler stops a trial by stopping its actor

    start = time.perf_counter()
    try:
        result, model = run_trial(arch, ctx, seed + number, reporter if report_epochs else None)
    except Rejected as exc:  # measured, not trained
        tune.report(
            {
                **base,
                **exc.scores.model_dump(),
                "rejected": exc.reason,
                "result_json": exc.scores.model_dump_json(),
                "trial_seconds": time.perf_counter() - start,
                "teacher_forward_calls": teacher_calls[0],
            }
        )
        return
    except Exception as exc:
        if reporting[0]:  # Tune's own control flow, not a failure of the trial
            raise
        tune.report({**base, "error": studies.error_text(exc)})
        return
    finally:
        hook.remove()
    ray.get(store.put.remote(number, student_bytes(model, arch)))
    tune.report(
        {
            **base,
            **result.model_dump(),
            "epoch": result.epochs,
            "result_json": result.model_dump_json(),
            "trial_seconds": time.perf_counter() - start,
            "teacher_forward_calls": teacher_calls[0],
        }
    )


class DefineByRun:
    """OptunaSearch's define-by-run space: our search space, plus the architecture and the
    trial number handed to the trainable as constants. Keeps each live Optuna trial, the public
    way to give it user attributes later."""

    def __init__(self, space: BoundSearchSpace) -> None:
        self.space = space
        self.trials: dict[int, optuna.Trial] = {}

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        arch = self.space.sample(trial)
        trial.set_user_attr("architecture", arch.model_dump(mode="json"))
        self.trials[trial.number] = trial
        return {"architecture": arch.model_dump_json(), "trial_number": trial.number}

    def set_attrs(
        self,
        number: int,
        attrs: dict[str, Any],
        limits: Limits | None = None,
        scores: TrialResult | None = None,
    ) -> str:
        """Before the trial is told (a finished trial takes no more attributes): its user
        attributes and, given `limits` and `scores`, its constraint values; returns the limits
        it breaks ('' when none)."""
        trial = self.trials.pop(number)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if limits is None or scores is None:
            return ""
        return studies.tell_limits(trial, limits, scores, was_trained=scores.epochs > 0)

    def __getstate__(self) -> dict[str, Any]:
        return {"space": self.space, "trials": {}}  # live trials stay with the driver


class BudgetSearcher(Searcher):
    """Wraps OptunaSearch in the driver: samples until `budget` trials have trained (to the end
    or stopped early; failed and rejected ones do not count), records every trial in the
    study, and hands completed ones to the controller."""

    def __init__(
        self, inner: OptunaSearch, space: DefineByRun, controller: RayController, budget: int
    ) -> None:
        super().__init__(metric=list(NAMES), mode=MODES)
        self.inner = inner
        self.space = space
        self.controller: RayController | None = controller
        self.budget = budget
        self.completed = studies.trained(controller.study)
        self.failures = studies.FailureBudget(
            controller.config.search.max_failed_trials, studies.failed(controller.study)
        )
        self.limits = controller.context.limits
        self.rejections = studies.RejectionBudget(budget, studies.rejected(controller.study))
        self.pending: dict[str, dict[str, Any]] = {}
        self.too_many_rejected = ""
        search = controller.config.search
        self.table = studies.rung_table(controller.study, search, controller.config.training.epochs)
        self.stopper = search.early_stop

    @property
    def stopped(self) -> bool:
        return self.failures.exhausted or bool(self.too_many_rejected)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher into tuner.pkl; the controller (teacher, callbacks) stays
        # with the driver, which keeps using this object. Resume reopens the study instead.
        return {**self.__dict__, "controller": None}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space are set already

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.stopped or self.completed >= self.budget:
            return Searcher.FINISHED
        if self.controller is not None and not self.controller.time_budget.allows():
            return Searcher.FINISHED  # the trials in flight still end
        if self.completed + len(self.pending) >= self.budget:
            return None  # enough trials in flight; ask again when one ends
        config = self.inner.suggest(trial_id)
        if isinstance(config, dict):
            self.pending[trial_id] = config
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # Optuna takes no intermediate values for several objectives

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        config = self.pending.pop(trial_id, None)
        if config is None or self.controller is None:
            return
        number = int(config["trial_number"])
        attrs: dict[str, Any] = {}
        if result and "trial_seconds" in result and "rejected" not in result:
            self.controller.time_budget.record(float(result["trial_seconds"]))
        if result and "node_id" in result:
            attrs["node_id"] = result["node_id"]
        if error or not result or "error" in result:
            attrs["error"] = result["error"] if result and "error" in result else WORKER_DIED
            self.space.set_attrs(number, attrs)
            self.inner.on_trial_complete(trial_id, None, error=True)
            self.failures.failed += 1
        elif "rejected" in result:  # measured before training; not counted
            scores = TrialResult.model_validate_json(result["result_json"])
            attrs["result"] = scores.model_dump()
            attrs["teacher_forward_calls"] = int(result.get("teacher_forward_calls", -1))
            self.space.set_attrs(number, attrs, self.limits, scores)
            self.inner.on_trial_complete(trial_id, {m: result[m] for m in NAMES})
            try:
                self.rejections.record(result["rejected"])
            except studies.SearchFailed as exc:
                self.too_many_rejected = str(exc)
        elif "result_json" not in result:
            attrs["error"] = (
                f"stopped early by {self.stopper} after epoch {result.get('epoch')} "
                f"(val_accuracy {result.get('val_accuracy', float('nan')):.4f})"
            )
            if self.table is not None:
                attrs[RUNGS_ATTR] = self.table.attr(number)
            self.space.set_attrs(number, attrs)
            self.inner.on_trial_complete(trial_id, None, error=False)  # PRUNED
            self.completed += 1  # it trained part-way: the budget counts it
        else:
            trial_result = TrialResult.model_validate_json(result["result_json"])
            arch = Architecture.model_validate_json(config["architecture"])
            attrs["result"] = trial_result.model_dump()
            attrs["teacher_forward_calls"] = int(result.get("teacher_forward_calls", -1))
            if self.table is not None:
                attrs[RUNGS_ATTR] = self.table.attr(number)
            self.controller.completed(number, arch, trial_result, float(result["trial_seconds"]))
            self.space.set_attrs(number, attrs, self.limits, trial_result)
            self.inner.on_trial_complete(trial_id, {m: result[m] for m in NAMES})
            self.completed += 1
        self.controller.after_trial(self.completed)

    def save(self, checkpoint_path: str) -> None:
        # The study in SQLite is the state that matters (resume reopens it); Tune's periodic
        # experiment checkpoints get the counters only.
        with open(checkpoint_path, "wb") as fh:
            pickle.dump({"completed": self.completed}, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class RungScheduler(FIFOScheduler):
    """`search.early_stop` under Tune: each epoch report goes to the run's RungTable (in the
    driver, shared with the searcher, which stores it with the trial), and a trial the table
    stops is stopped."""

    def __init__(self, table: RungTable) -> None:
        super().__init__()
        self.table = table

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if "result_json" in result or "trial_number" not in result or "epoch" not in result:
            return TrialScheduler.CONTINUE  # the final result, a rejection or an error
        report = EpochReport(
            int(result["epoch"]),
            float(result["val_accuracy"]),
            float(result["latency_ms"]),
            int(result["size_bytes"]),
        )
        stop = self.table.report(int(result["trial_number"]), report)
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE


class RayController(Controller):
    def records(self) -> list[TrialRecord]:
        return studies.records(studies.open_study(self.study_ref))

    def run(
        self, on_complete: OnComplete, on_records: OnRecords, progress: SearchProgress
    ) -> ControllerTimes:
        started = connect(self.config.ray)
        try:
            return self._run(self.config.ray, on_complete, on_records, progress)
        finally:
            if started:
                ray.shutdown()

    def _run(
        self,
        cfg: RayConfig,
        on_complete: OnComplete,
        on_records: OnRecords,
        progress: SearchProgress,
    ) -> ControllerTimes:
        start = time.perf_counter()
        storage = studies.open_storage(self.study_ref)
        self.study = studies.open_study(self.study_ref, storage)
        studies.fail_interrupted(self.study)
        self.time_budget.durations.extend(studies.trial_seconds(self.study))
        self._on_complete, self._on_records, self._progress = on_complete, on_records, progress
        self._trial_seconds = 0.0
        budget = self.config.search.budget
        sampler = create_sampler(
            self.config.search.sampler, studies.resumed_seed(self.study, self.config.seed)
        )
        space = DefineByRun(self.space)
        inner = OptunaSearch(
            space=space,
            metric=list(NAMES),
            mode=MODES,
            sampler=sampler,
            study_name=self.study_ref.name,
            storage=storage,
        )
        searcher = BudgetSearcher(inner, space, self, budget)
        times = lambda wall, trials: ControllerTimes(wall, trials, type(sampler).__name__)  # noqa: E731
        progress.start(budget, searcher.completed)
        if searcher.completed >= budget:
            progress.close()
            return times(time.perf_counter() - start, 0.0)

        driver_node = ray.get_runtime_context().get_node_id()
        self._store = WeightStore.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(driver_node, soft=False)
        ).remote()
        cpus = cfg.cpus_per_trial
        concurrent = cfg.max_concurrent or max(
            1, int(ray.cluster_resources().get("CPU", 1) // cpus)
        )
        trainable = tune.with_parameters(
            ray_trial,
            context=dataclasses.replace(self.context, device=torch.device("cpu")),
            store=self._store,
            seed=self.config.seed,
            threads=max(1, int(cpus)),
            use_gpu=cfg.gpus_per_trial > 0,
            report_epochs=searcher.table is not None,
            plugins=tuple(self.config.plugins),
        )
        scheduler = None if searcher.table is None else RungScheduler(searcher.table)
        # Per-epoch reports carry no size or MACs and failure reports an error only; Tune's
        # strict check wants every metric in every result. The old console output honours
        # verbose=0 (the new one prints an experiment table whatever is asked).
        os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Tune's JSON/CSV/TensorBoard result files repeat what the study and trials.csv hold,
        # at a cost in driver CPU per result that trials feel on a small machine.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        ray_dir = (self.study_ref.work_dir / "ray").resolve()
        session = len(list(ray_dir.glob("session-*"))) if ray_dir.exists() else 0
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus, "gpu": cfg.gpus_per_trial}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=-1,
                max_concurrent_trials=concurrent,
                # A new actor per trial would import torch and fetch the context each time.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"session-{session}",
                storage_path=str(ray_dir),
                failure_config=tune.FailureConfig(max_failures=cfg.max_retries),
                verbose=0,
            ),
        )
        try:
            tuner.fit()
        finally:
            progress.close()
        if searcher.too_many_rejected:
            raise studies.SearchFailed(searcher.too_many_rejected)
        if searcher.failures.exhausted:
            raise studies.SearchFailed(
                f"{searcher.failures.failed} trials failed (search.max_failed_trials is "
                f"{searcher.failures.limit}); see the error column of trials.csv"
            )
        wall = time.perf_counter() - start
        # Trials overlap: their summed time is spread over the concurrent slots.
        return times(wall, min(wall, self._trial_seconds / concurrent))

    # Called by BudgetSearcher in the driver.
    def completed(
        self, number: int, arch: Architecture, result: TrialResult, seconds: float
    ) -> None:
        weights = ray.get(self._store.pop.remote(number))
        if weights is None:
            raise RuntimeError(f"trial {number}: its weights never reached the driver")
        self._on_complete(number, arch, result, weights)
        self._trial_seconds += seconds

    def after_trial(self, completed: int) -> None:
        front = self._on_records(studies.records(self.study))
        accs = [r.result.val_accuracy for r in front if r.result is not None]
        self._progress.update(completed, len(front), max(accs) if accs else 0.0, "")
