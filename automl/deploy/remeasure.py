"""`report`: measure every front model and the teacher again, together, in their deployed forms.

During a search each trial's latency is taken when the trial ends, minutes apart from its
neighbours, so front neighbours differ by machine drift as much as by model. Here all of
them run in one process, in interleaved rounds (`measure.interleaved_latency_ms`), at
batch 1 and a larger batch, in PyTorch and in ONNX Runtime (int8 for students whose weights
are all at most 8 bits). Front membership stays what the search decided; the figures beside
it are new.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from automl.data.bundle import head
from automl.deploy.check import DeployedOnnx, ExportCheckFailed, deploy_onnx
from automl.deploy.onnx import INPUT_NAME, session
from automl.files import write_file
from automl.measure import batch_of, interleaved_latency_ms, torch_threads
from automl.objectives import OBJECTIVES
from automl.pareto import knee_point, rank_correlation
from automl.run.documents import (
    Deployed,
    DeployFailed,
    FrontMember,
    Latencies,
    Measurement,
    ParetoDocument,
    TeacherFigures,
)
from automl.run.finished import SearchRun
from automl.run.layout import trial_key
from automl.run.lock import run_lock
from automl.run.report import build_report, report_title
from automl.student.build import deploy_form

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")
TEACHER = "teacher"


@dataclass(frozen=True)
class MeasureSettings:
    batch_sizes: tuple[int, ...] = (1, 32)
    rounds: int = 7
    calls: int = 10
    warmup: int = 3
    threads: int = 1


def remeasure(
    run: SearchRun, settings: MeasureSettings, say: Callable[[str], None] = log.info
) -> ParetoDocument:
    """The run's pareto document with re-measured figures for the teacher and every front
    model (see the module docstring). Writes the ONNX forms to <run>/onnx/, after the checks
    that can refuse (weights, data)."""
    run.check_weights()
    data = run.load_data()
    teacher = run.load_teacher(data)
    folder = run.run_dir.onnx
    folder.mkdir(exist_ok=True)
    models: dict[str, torch.nn.Module] = {TEACHER: teacher.model.cpu().eval()}
    deployed: dict[str, DeployedOnnx | str] = {}
    say(f"exporting the teacher and {len(run.front)} front models to ONNX")
    deployed[TEACHER] = deploy_onnx(
        models[TEACHER], deploy_form(None), data, folder / "teacher.onnx"
    )
    for k, m in enumerate(run.front, 1):
        key = trial_key(m.trial)
        models[key], arch = run.load_model(m, data)
        try:
            dep = deploy_onnx(
                models[key],
                deploy_form(arch),
                data,
                folder / f"{key}.onnx",
                seed=run.trial_seed(m.trial),
            )
            deployed[key] = dep
            note = f"; {dep.fallback}" if dep.fallback else ""
            say(f"ONNX {k}/{len(run.front)}: trial {m.trial}, {dep.format}{note}")
        except ExportCheckFailed as exc:
            deployed[key] = str(exc)
            say(f"ONNX {k}/{len(run.front)}: trial {m.trial}: {exc}")

    runners: dict[str, Callable[[], object]] = {}
    for key, model in models.items():
        for b in settings.batch_sizes:
            x = batch_of(head(data.test, b), b)
            runners[f"{key}|torch|{b}"] = lambda model=model, x=x: model(x)
            dep = deployed[key]
            if isinstance(dep, DeployedOnnx):
                sess, feed = session(dep.path, settings.threads), {INPUT_NAME: x.numpy()}
                runners[f"{key}|onnxruntime|{b}"] = lambda s=sess, f=feed: s.run(None, f)
    say(
        f"timing {len(runners)} model/runtime/batch cells in {settings.rounds} interleaved "
        f"rounds of {settings.calls} calls, {settings.threads} thread(s)"
    )
    with torch.inference_mode(), torch_threads(settings.threads):
        times = interleaved_latency_ms(
            runners,
            rounds=settings.rounds,
            calls=settings.calls,
            warmup=settings.warmup,
            seed=run.config.seed,
        )

    def latency_of(key: str) -> Latencies:
        return {
            runtime: {
                f"batch_{b}": round(times[f"{key}|{runtime}|{b}"], 5)
                for b in settings.batch_sizes
                if f"{key}|{runtime}|{b}" in times
            }
            for runtime in RUNTIMES
        }

    measured = _document(run.pareto, settings, deployed, latency_of)
    assert measured.measurement is not None
    measured.measurement.search_rank_tau = _search_rank_tau(
        measured, run.config.latency.runtime, run.config.latency.batch_size
    )
    return measured


def _search_rank_tau(pareto: ParetoDocument, runtime: str, batch: int) -> float | None:
    """How the re-measured front ranks against the search's own latencies: Kendall tau over
    the front, on the runtime and batch the search timed (None where report measured no such
    cell, or the front is too small)."""
    pairs = [
        (m.latency_ms, m.measured_latency_ms[runtime].get(f"batch_{batch}"))
        for m in pareto.front
        if m.measured_latency_ms is not None
    ]
    found = [(a, b) for a, b in pairs if b is not None]
    if len(found) < len(pareto.front):
        return None
    return rank_correlation([a for a, _ in found], [b for _, b in found])


def _record(dep: DeployedOnnx | str) -> Deployed | DeployFailed:
    if isinstance(dep, DeployedOnnx):
        return Deployed(**dep.as_dict())
    return DeployFailed(error=dep)


def _document(
    pareto: ParetoDocument,
    settings: MeasureSettings,
    deployed: dict[str, DeployedOnnx | str],
    latency_of: Callable[[str], Latencies],
) -> ParetoDocument:
    t_lat = latency_of(TEACHER)
    teacher_deployed = _record(deployed[TEACHER])
    assert isinstance(teacher_deployed, Deployed), "the teacher's fp32 export failed its check"
    teacher = pareto.teacher.model_copy(
        update={"measured_latency_ms": t_lat, "deployed": teacher_deployed}
    )
    front = []
    for m in pareto.front:
        key = trial_key(m.trial)
        lat, dep = latency_of(key), _record(deployed[key])
        update = {
            "measured_latency_ms": lat,
            "deployed": dep,
            "speedup": {
                runtime: {b: round(t_lat[runtime][b] / ms, 3) for b, ms in lat[runtime].items()}
                for runtime in RUNTIMES
            },
            "compression": round(teacher.size_bytes / m.size_bytes, 2),
            "onnx_compression": round(teacher_deployed.onnx_bytes / dep.onnx_bytes, 2)
            if isinstance(dep, Deployed)
            else None,
        }
        front.append(m.model_copy(update=update))
    measured = pareto.model_copy(update={"teacher": teacher, "front": front})
    measured.knee_trial = _knee(measured)
    measured.measurement = Measurement(
        what="median over interleaved rounds of per-round median wall time per call",
        batch_sizes=list(settings.batch_sizes),
        rounds=settings.rounds,
        calls_per_round=settings.calls,
        warmup_per_round=settings.warmup,
        threads=settings.threads,
        runtimes={
            "torch": "PyTorch eager, fp32 weights (fake-quant folded)",
            "onnxruntime": "ONNX Runtime CPU: int8 QDQ when every weight is <= 8 bits, else fp32",
        },
        machine=" ".join(
            filter(None, [platform.machine(), platform.processor(), f"{os.cpu_count()} cores"])
        ),
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return measured


def deployed_latency(member: FrontMember | TeacherFigures, batch: str = "batch_1") -> float:
    """The latency a user ships: ONNX Runtime's when measured, else PyTorch's."""
    lat = member.measured_latency_ms
    if lat is None:
        return float(member.latency_ms)
    return float(lat["onnxruntime"].get(batch) or lat["torch"][batch])


def _knee(pareto: ParetoDocument) -> int | None:
    """The knee of the front in the normalised objectives, with the deployed latency for the
    latency: the front model closest to the ideal after scaling each objective."""
    if not pareto.front:
        return None
    teacher = pareto.teacher

    def value(m: FrontMember | TeacherFigures, name: str) -> float:
        return deployed_latency(m) if name == "latency_ms" else getattr(m, name)

    t_values = {o.name: value(teacher, o.name) for o in OBJECTIVES}
    points = np.array(
        [
            [o.normalised(value(m, o.name), t_values[o.name]) for o in OBJECTIVES]
            for m in pareto.front
        ]
    )
    return pareto.front[knee_point(points)].trial


def rebuild_report(
    run: SearchRun, settings: MeasureSettings, say: Callable[[str], None] = log.info
) -> ParetoDocument:
    """Re-measure the front, then rewrite pareto.json and report.html; returns the document.
    Holds the run's lock."""
    with run_lock(run.run_dir.path):
        pareto = remeasure(run, settings, say)
        run.run_dir.write_pareto(pareto)
        page = build_report(
            pareto,
            run.run_dir.read_trial_points(),
            report_title(run.config.name),
            run.config.latency,
        )
        write_file(run.run_dir.report_html, page)
    run.pareto = pareto
    return pareto
