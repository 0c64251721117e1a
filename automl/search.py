"""A whole search: config -> data -> teacher -> space -> controller -> run directory."""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import timm
import torch
import torch_pruning as tp

import automl
from automl.config import ExperimentConfig, validate_config
from automl.controllers import create_controller
from automl.data import DataBundle, load_data
from automl.errors import UserError
from automl.measure import latency_ms, macs_and_params
from automl.progress import SearchProgress, make_progress
from automl.report import build_report, trial_points
from automl.rundir import RunDir, TrialRecord, pareto_document
from automl.stages import find_stages
from automl.student_io import write_student
from automl.trial import TrialContext, TrialResult
from search_spaces import Architecture
from teachers.cache import Teacher, get_teacher

log = logging.getLogger(__name__)


@dataclass
class SearchSummary:
    run_dir: Path
    completed: int
    front_size: int
    hypervolume: float
    wall_seconds: float
    controller_overhead_fraction: float


def report_title(name: str) -> str:
    return f"Compression search: {name}"


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device: cuda was asked for but no CUDA device is available; use auto or cpu"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(
    config: ExperimentConfig, retrain: bool = False
) -> tuple[DataBundle, Teacher, torch.device]:
    """Data and teacher for a config: the shared start of `search` and `teacher`."""
    torch.set_num_threads(config.training.threads or os.cpu_count() or 1)
    device = resolve_device(config.device)
    data = load_data(config.data, config.seed)
    teacher = get_teacher(config.teacher, data, device, config.seed, retrain=retrain)
    return data, teacher, device


def teacher_figures(
    teacher: Teacher, data: DataBundle, config: ExperimentConfig, device: torch.device
) -> dict[str, Any]:
    """The teacher measured exactly as the students are (same device, threads, repeats)."""
    lat = config.latency
    macs, params = macs_and_params(teacher.model, data.example_input(1))
    figures = {
        "model": teacher.card.model,
        "params": params,
        "macs": macs,
        "size_bytes": teacher.card.size_bytes,
        "latency_ms": latency_ms(
            teacher.model,
            data.example_input(lat.batch_size),
            device,
            repeats=lat.repeats,
            warmup=lat.warmup,
            threads=lat.threads,
        ),
        "val_accuracy": teacher.card.val_accuracy,
        "test_accuracy": teacher.card.test_accuracy,
        "fingerprint": teacher.card.fingerprint,
    }
    teacher.model.cpu()
    return figures


def library_versions() -> dict[str, str]:
    return {
        "automl": automl.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "optuna": optuna.__version__,
        "torch_pruning": getattr(tp, "__version__", "unknown"),
        **{name: _installed(name) for name in ("onnxruntime", "ray") if _installed(name)},
    }


def _installed(distribution: str) -> str:
    """The installed version of a distribution, '' when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""


def resume_config(
    run_path: Path, budget: int | None = None, address: str | None = None
) -> ExperimentConfig:
    """The config stored in a run directory's run.json; `budget` may raise its budget and
    `address` name the Ray cluster (it may have moved since)."""
    run_dir = RunDir(run_path)
    if not run_dir.run_json.is_file():
        raise UserError(f"--resume: no run to resume at {run_dir.path} (run.json missing)")
    stored = run_dir.read_run()["config"]
    if budget is not None:
        stored["search"]["budget"] = max(stored["search"]["budget"], budget)
    if address is not None:
        stored.setdefault("ray", {})["address"] = address
    return validate_config(stored, str(run_dir.run_json))


def open_run(config: ExperimentConfig, resume: bool) -> RunDir:
    """The run directory, checked: a new search never writes over an existing run."""
    run_dir = RunDir(config.run_dir)
    if not resume and (run_dir.run_json.exists() or run_dir.study_db.exists()):
        raise UserError(
            f"run directory {run_dir.path} already holds a run; continue it with --resume, "
            "or choose another --name or --out"
        )
    return run_dir


def run_search(
    config: ExperimentConfig, resume: bool = False, progress: SearchProgress | None = None
) -> SearchSummary:
    """Run a search to its budget and write the run directory. With `resume`, continue the
    run already there; pass the config from `resume_config`."""
    wall_start = time.perf_counter()
    run_dir = open_run(config, resume)
    data, teacher, device = prepare(config)
    teacher_seconds = time.perf_counter() - wall_start
    stages = find_stages(teacher.model, data.example_input())
    try:
        space = config.search_space.bind(stages)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    figures = teacher_figures(teacher, data, config, device)
    run_dir.create()
    previous = run_dir.read_run() if resume else {}
    run_doc: dict[str, Any] = {
        "config": config.model_dump(mode="json"),
        "study_name": config.name,
        "backend": config.search.backend,
        "seed": config.seed,
        "device": str(device),
        "teacher": figures,
        "stages": space.describe(),
        "data": {
            "name": data.name,
            "train": len(data.train),
            "val": len(data.val),
            "test": len(data.test),
            "preprocess": data.preprocess,
            "fingerprint": data.fingerprint,
        },
        "versions": library_versions(),
        "status": "running",
        "sessions": previous.get("sessions", []),
    }
    run_dir.write_json(run_dir.run_json, run_doc)
    context = TrialContext(
        teacher.model, stages, data, teacher.train_logits, config.training, config.latency, device
    )
    controller = create_controller(config.search.backend, config, run_dir, space, context)

    def on_complete(number: int, arch: Architecture, result: TrialResult, weights: bytes):
        write_student(
            run_dir.weights_path(number),
            weights,
            arch,
            {"trial": number, "teacher": teacher.card.model, **result.model_dump()},
        )

    def on_records(records: list[TrialRecord]) -> list[TrialRecord]:
        pareto = pareto_document(records, figures, run_dir)
        run_dir.write_trials(records)
        run_dir.write_json(run_dir.pareto_json, pareto)
        on_front = {m["trial"] for m in pareto["front"]}
        run_dir.prune_weights(on_front)
        return [r for r in records if r.number in on_front]

    setup_seconds = time.perf_counter() - wall_start
    times = controller.run(on_complete, on_records, progress or make_progress())
    records = controller.records()
    on_records(records)
    pareto = pareto_document(records, figures, run_dir)
    run_dir.report_html.write_text(
        build_report(pareto, trial_points(records), report_title(config.name))
    )
    wall = time.perf_counter() - wall_start
    run_doc["sessions"].append(
        {
            "wall_seconds": round(wall, 2),
            "setup_seconds": round(setup_seconds, 2),
            "search_seconds": round(times.wall_seconds, 2),
            "trial_seconds": round(times.trial_seconds, 2),
            "controller_overhead_seconds": round(times.overhead_seconds, 2),
            "controller_overhead_fraction": round(times.overhead_seconds / times.wall_seconds, 4)
            if times.wall_seconds
            else 0.0,
            "teacher_seconds": round(teacher_seconds, 2),  # training on first use, else loading
        }
    )
    run_doc["status"] = "complete"
    run_doc["wall_seconds"] = round(sum(s["wall_seconds"] for s in run_doc["sessions"]), 2)
    run_dir.write_json(run_dir.run_json, run_doc)
    completed = sum(r.state == "COMPLETE" for r in records)
    return SearchSummary(
        run_dir.path,
        completed,
        len(pareto["front"]),
        pareto["hypervolume"],
        wall,
        run_doc["sessions"][-1]["controller_overhead_fraction"],
    )
