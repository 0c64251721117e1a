"""`report`: measure every front model and the teacher again, together, in their deployed forms.

During a search each trial's latency is taken when the trial ends, minutes apart from its
neighbours, so front neighbours differ by machine drift as much as by model. Here all of
them run in one process, in interleaved rounds (`measure.interleaved_latency_ms`), at
batch 1 and a larger batch, in PyTorch and in ONNX Runtime (int8 for students of at most
8 bits). Front membership stays what the search decided; the figures beside it are new.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.deploy import DeployedOnnx, ExportCheckFailed, deploy_onnx
from automl.measure import batch_of, interleaved_latency_ms, torch_threads
from automl.onnx_runtime import INPUT_NAME, session
from automl.pareto import knee_point
from automl.runs import SearchRun

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


def onnx_dir(run: SearchRun) -> Path:
    return run.run_dir.path / "onnx"


def remeasure(
    run: SearchRun, settings: MeasureSettings, say: Callable[[str], None] = log.info
) -> dict[str, Any]:
    """The run's pareto document with re-measured figures for the teacher and every front
    model (see the module docstring). Writes the ONNX forms to <run>/onnx/."""
    data = run.load_data()
    teacher = run.load_teacher(data)
    folder = onnx_dir(run)
    folder.mkdir(exist_ok=True)
    models: dict[str, torch.nn.Module] = {TEACHER: teacher.model.cpu().eval()}
    deployed: dict[str, DeployedOnnx | str] = {}
    say(f"exporting the teacher and {len(run.front)} front models to ONNX")
    deployed[TEACHER] = deploy_onnx(models[TEACHER], None, data, folder / "teacher.onnx")
    for m in run.front:
        key = f"trial_{m['trial']:04d}"
        models[key], arch = run.load_model(m, data)
        try:
            deployed[key] = deploy_onnx(
                models[key], arch, data, folder / f"{key}.onnx", seed=run.trial_seed(m["trial"])
            )
        except ExportCheckFailed as exc:
            deployed[key] = str(exc)
            log.warning("trial %d: %s", m["trial"], exc)

    runners: dict[tuple[str, str, int], Callable[[], object]] = {}
    for key, model in models.items():
        for b in settings.batch_sizes:
            x = batch_of(data.test.x, b)
            runners[(key, "torch", b)] = lambda model=model, x=x: model(x)
            dep = deployed[key]
            if isinstance(dep, DeployedOnnx):
                sess, feed = session(dep.path, settings.threads), {INPUT_NAME: x.numpy()}
                runners[(key, "onnxruntime", b)] = lambda s=sess, f=feed: s.run(None, f)
    say(
        f"timing {len(runners)} model/runtime/batch cells in {settings.rounds} interleaved "
        f"rounds of {settings.calls} calls, {settings.threads} thread(s)"
    )
    names = {f"{k}|{r}|{b}": fn for (k, r, b), fn in runners.items()}
    with torch.inference_mode(), torch_threads(settings.threads):
        times = interleaved_latency_ms(
            names,
            rounds=settings.rounds,
            calls=settings.calls,
            warmup=settings.warmup,
            seed=run.config.seed,
        )

    def latency_of(key: str) -> dict[str, dict[str, float]]:
        return {
            runtime: {
                f"batch_{b}": round(times[f"{key}|{runtime}|{b}"], 5)
                for b in settings.batch_sizes
                if f"{key}|{runtime}|{b}" in times
            }
            for runtime in RUNTIMES
        }

    return _document(run, settings, deployed, latency_of)


def _document(run, settings, deployed, latency_of) -> dict[str, Any]:
    pareto = copy.deepcopy(run.pareto)
    teacher = pareto["teacher"]
    teacher["measured_latency_ms"] = latency_of(TEACHER)
    teacher["deployed"] = deployed[TEACHER].as_dict()
    t_lat = teacher["measured_latency_ms"]
    for m in pareto["front"]:
        key = f"trial_{m['trial']:04d}"
        dep = deployed[key]
        m["measured_latency_ms"] = lat = latency_of(key)
        m["deployed"] = dep.as_dict() if isinstance(dep, DeployedOnnx) else {"error": dep}
        m["speedup"] = {
            runtime: {b: round(t_lat[runtime][b] / ms, 3) for b, ms in lat[runtime].items()}
            for runtime in RUNTIMES
        }
        m["compression"] = round(teacher["size_bytes"] / m["size_bytes"], 2)
        if isinstance(dep, DeployedOnnx):
            m["onnx_compression"] = round(teacher["deployed"]["onnx_bytes"] / dep.onnx_bytes, 2)
    pareto["knee_trial"] = _knee(pareto)
    pareto["measurement"] = {
        "what": "median over interleaved rounds of per-round median wall time per call",
        "batch_sizes": list(settings.batch_sizes),
        "rounds": settings.rounds,
        "calls_per_round": settings.calls,
        "warmup_per_round": settings.warmup,
        "threads": settings.threads,
        "runtimes": {
            "torch": "PyTorch eager, fp32 weights (fake-quant folded)",
            "onnxruntime": "ONNX Runtime CPU: int8 QDQ for <= 8 bits, else fp32",
        },
        "machine": " ".join(
            filter(None, [platform.machine(), platform.processor(), f"{os.cpu_count()} cores"])
        ),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return pareto


def deployed_latency(member: dict[str, Any], batch: str = "batch_1") -> float:
    """The latency a user ships: ONNX Runtime's when measured, else PyTorch's."""
    lat = member.get("measured_latency_ms")
    if lat is None:
        return float(member["latency_ms"])
    return float(lat["onnxruntime"].get(batch) or lat["torch"][batch])


def _knee(pareto: dict[str, Any]) -> int | None:
    """The knee of the front in (1 - val acc, deployed latency, packed size), each relative to
    the teacher: the front model closest to the ideal after scaling each objective."""
    front = pareto["front"]
    if not front:
        return None
    teacher = pareto["teacher"]
    points = np.array(
        [
            [
                1 - m["val_accuracy"],
                deployed_latency(m) / deployed_latency(teacher),
                m["size_bytes"] / teacher["size_bytes"],
            ]
            for m in front
        ]
    )
    return int(front[knee_point(points)]["trial"])


def rebuild_report(
    run: SearchRun, settings: MeasureSettings, say: Callable[[str], None] = log.info
) -> dict[str, Any]:
    """Re-measure the front, then rewrite pareto.json and report.html; returns the document."""
    from automl.report import build_report
    from automl.runs import read_trial_points
    from automl.search import report_title

    pareto = remeasure(run, settings, say)
    run.run_dir.write_json(run.run_dir.pareto_json, pareto)
    page = build_report(pareto, read_trial_points(run.run_dir), report_title(run.config.name))
    tmp = run.run_dir.report_html.with_suffix(".html.tmp")
    tmp.write_text(page)
    os.replace(tmp, run.run_dir.report_html)
    run.pareto = pareto
    return pareto
