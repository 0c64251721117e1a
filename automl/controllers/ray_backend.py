"""The Ray Tune controller: the same trial function, scheduled on a Ray cluster.

- Ray Tune's `OptunaSearch` samples the same pydantic search space (define-by-run), with the
  same sampler and the same three objectives, into the same SQLite study as the local
  backend; `BudgetSearcher` around it stops sampling at the budget of completed trials and
  records each trial (architecture, result, node, error) in the study.
- The trial context (teacher, its cached logits, the data) goes to the object store once,
  through `tune.with_parameters`; workers never load or train a teacher.
- A finished student's weights travel back through a small actor pinned to the driver's
  node (`WeightStore`), so no shared file system is needed.
- A trial whose worker dies is retried (`ray.max_retries`); a trial that fails on its own
  (an exception, a NaN loss) is recorded as failed and not retried.
- `--resume` opens the same study again and runs a new Tune experiment beside the old ones
  (`<run>/ray/session-N`): completed trials live in the study and in models/, so none is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import time
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from automl.config import RayConfig
from automl.controllers.base import Controller, ControllerTimes, SearchFailed
from automl.controllers.optuna_backend import (
    fail_interrupted,
    make_sampler,
    open_storage,
    open_study,
    resumed_seed,
    study_records,
)
from automl.errors import UserError
from automl.student_io import student_bytes
from automl.trial import TrialContext, TrialResult, run_trial
from search_spaces import Architecture, BoundSearchSpace

log = logging.getLogger(__name__)

OBJECTIVES = ["val_accuracy", "latency_ms", "size_bytes"]
MODES = ["max", "min", "min"]


def connect(cfg: RayConfig) -> bool:
    """Join the cluster at `cfg.address`, or start a local instance that listens on 127.0.0.1
    only and runs no dashboard unless asked. Returns True when a new connection was made."""
    if ray.is_initialized():
        return False
    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    if cfg.address:
        try:
            ray.init(address=cfg.address, **common)
        except Exception as exc:
            raise UserError(
                f"cannot join the Ray cluster at {cfg.address} ({type(exc).__name__}: {exc}). "
                "Start one with `ray start --head --port PORT`; a driver of a cluster started "
                "that way needs RAY_AUTH_MODE=token in its environment"
            ) from None
        return True
    # Ray swaps 127.0.0.1 for the machine's interface address and listens on every interface
    # (measured with Ray 2.60), unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0. Ray reads it when
    # a process imports ray: the processes ray.init starts get it from the environment, and
    # this process, which imported ray already, gets it in ray_constants for the start.
    from ray._private import ray_constants

    var = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    previous_env = os.environ.get(var)
    os.environ[var] = "0"
    previous, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=cfg.dashboard,
            dashboard_host="127.0.0.1",
            **common,
        )
    finally:  # only the instance started here is single-node
        ray_constants.ENABLE_RAY_CLUSTER = previous
        if previous_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = previous_env
    return True


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
) -> None:
    """The Tune trainable: one `run_trial` on a worker. Reports val_accuracy per epoch when a
    scheduler needs it, then one final result with every metric (or an `error`)."""
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

    def reporter(epoch: int, val_accuracy: float) -> bool:
        if epoch < ctx.training.epochs:  # the last epoch is in the final result
            reporting[0] = True
            tune.report({**base, "epoch": epoch, "val_accuracy": val_accuracy})
            reporting[0] = False
        return False  # the scheduler stops a trial by stopping its actor

    start = time.perf_counter()
    try:
        result, model = run_trial(arch, ctx, seed + number, reporter if report_epochs else None)
    except Exception as exc:
        if reporting[0]:  # Tune's own control flow, not a failure of the trial
            raise
        tune.report({**base, "error": f"{type(exc).__name__}: {exc}"})
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
    trial number handed to the trainable as constants."""

    def __init__(self, space: BoundSearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        arch = self.space.sample(trial)
        trial.set_user_attr("architecture", arch.flat())
        return {"architecture": arch.model_dump_json(), "trial_number": trial.number}


_ACTIVE: dict[str, RayController] = {}


class BudgetSearcher(Searcher):
    """Wraps OptunaSearch: samples until `budget` trials have completed (failed and stopped
    ones do not count), records every trial in the study, and hands completed ones to the
    controller's callbacks. Runs in the driver."""

    FINISHED = Searcher.FINISHED

    def __init__(self, inner: OptunaSearch, controller: RayController, budget: int) -> None:
        super().__init__(metric=OBJECTIVES, mode=MODES)
        self.inner = inner
        # Tune pickles its searcher with the experiment; the controller (teacher, callbacks)
        # stays out of the pickle, looked up by key in this process.
        self.key = str(controller.run_dir.path.resolve())
        _ACTIVE[self.key] = controller
        self.budget = budget
        records = study_records(controller.study)
        self.completed = sum(r.state == "COMPLETE" for r in records)
        self.failed = sum(r.state == "FAIL" for r in records)
        self.pending: dict[str, dict[str, Any]] = {}
        self.stopped_for_failures = False

    @property
    def controller(self) -> RayController:
        return _ACTIVE[self.key]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space are set already

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.stopped_for_failures or self.completed >= self.budget:
            return Searcher.FINISHED
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
        if config is None:
            return
        number = int(config["trial_number"])
        attrs: dict[str, Any] = {}
        if result and "node_id" in result:
            attrs["node_id"] = result["node_id"]
        # User attributes go in before Optuna is told: a finished trial takes no more.
        if error or not result:
            attrs["error"] = "the trial's worker failed and its retries ran out (ray.max_retries)"
            self.controller.set_attrs(number, attrs)
            self.inner.on_trial_complete(trial_id, None, error=True)
            self.failed += 1
        elif "error" in result:
            attrs["error"] = result["error"]
            self.controller.set_attrs(number, attrs)
            self.inner.on_trial_complete(trial_id, None, error=True)
            self.failed += 1
        elif "result_json" not in result:
            attrs["error"] = (
                f"stopped early by ASHA after epoch {result.get('epoch')} "
                f"(val_accuracy {result.get('val_accuracy', float('nan')):.4f})"
            )
            self.controller.set_attrs(number, attrs)
            self.inner.on_trial_complete(trial_id, None, error=False)  # PRUNED
        else:
            trial_result = TrialResult.model_validate_json(result["result_json"])
            arch = Architecture.model_validate_json(config["architecture"])
            attrs["result"] = trial_result.model_dump()
            self.controller.completed(number, arch, trial_result, result, attrs)
            self.inner.on_trial_complete(trial_id, {m: result[m] for m in OBJECTIVES})
            self.completed += 1
        self.controller.after_trial()
        if self.failed > self.controller.config.search.max_failed_trials:
            self.stopped_for_failures = True

    def save(self, checkpoint_path: str) -> None:
        # The study in SQLite is the state that matters (resume reopens it); Tune's periodic
        # experiment checkpoints get the counters only.
        with open(checkpoint_path, "wb") as fh:
            pickle.dump({"completed": self.completed, "failed": self.failed}, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class RayController(Controller):
    @property
    def study_name(self) -> str:
        return self.config.name

    def records(self, study: optuna.Study | None = None):
        return study_records(study or open_study(self.run_dir, self.study_name))

    def run(self, on_complete, on_records, progress) -> ControllerTimes:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = self.config.ray
        started = connect(cfg)
        try:
            return self._run(cfg, on_complete, on_records, progress)
        finally:
            if started:
                ray.shutdown()

    def _run(self, cfg: RayConfig, on_complete, on_records, progress) -> ControllerTimes:
        start = time.perf_counter()
        self.study = open_study(self.run_dir, self.study_name)
        fail_interrupted(self.study)
        self._on_complete, self._on_records, self._progress = on_complete, on_records, progress
        self._trial_seconds = 0.0
        budget = self.config.search.budget
        sampler = make_sampler(self.config.search.sampler, resumed_seed(self.study, self.config))
        inner = OptunaSearch(
            space=DefineByRun(self.space),
            metric=OBJECTIVES,
            mode=MODES,
            sampler=sampler,
            study_name=self.study_name,
            storage=open_storage(self.run_dir),
        )
        searcher = BudgetSearcher(inner, self, budget)
        self._searcher = searcher
        progress.start(budget, searcher.completed)
        if searcher.completed >= budget:
            progress.close()
            return ControllerTimes(time.perf_counter() - start, 0.0)

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
            report_epochs=cfg.early_stop == "asha",
        )
        scheduler = None
        if cfg.early_stop == "asha":
            scheduler = tune.schedulers.ASHAScheduler(
                time_attr="epoch",
                metric="val_accuracy",
                mode="max",
                max_t=self.config.training.epochs,
                grace_period=1,
                reduction_factor=2,
            )
        # Per-epoch reports carry val_accuracy only and failure reports an error only; Tune's
        # strict check wants every metric in every result. The old console output honours
        # verbose=0 (the new one prints an experiment table whatever is asked).
        os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Tune's JSON/CSV/TensorBoard result files repeat what the study and trials.csv hold,
        # at a cost in driver CPU per result that trials feel on a small machine.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        ray_dir = (self.run_dir.path / "ray").resolve()
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
            _ACTIVE.pop(searcher.key, None)
        if searcher.stopped_for_failures:
            raise SearchFailed(
                f"{searcher.failed} trials failed (search.max_failed_trials is "
                f"{self.config.search.max_failed_trials}); see the error column of trials.csv"
            )
        wall = time.perf_counter() - start
        # Trials overlap: their summed time is spread over the concurrent slots.
        return ControllerTimes(wall, min(wall, self._trial_seconds / concurrent))

    # Called by BudgetSearcher in the driver.
    def completed(self, number, arch, result: TrialResult, final: dict, attrs) -> None:
        weights = ray.get(self._store.pop.remote(number))
        if weights is None:
            raise RuntimeError(f"trial {number}: its weights never reached the driver")
        self._on_complete(number, arch, result, weights)
        attrs["teacher_forward_calls"] = int(final.get("teacher_forward_calls", -1))
        self.set_attrs(number, attrs)
        self._trial_seconds += float(final.get("trial_seconds", 0.0))

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)

    def after_trial(self) -> None:
        front = self._on_records(self.records(self.study))
        accs = [r.result.val_accuracy for r in front if r.result is not None]
        self._progress.update(self._searcher.completed, len(front), max(accs) if accs else 0.0, "")
