"""report.html: a self-contained plotly page (plotly.js inlined, so it opens offline).

The page only formats what pareto.json and the trial records already hold. Its plots have one
panel per objective against accuracy; its table shows what each technique says of a student
(`Technique.describe`).
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from automl.compress import get_technique
from automl.objectives import OBJECTIVES
from automl.run.documents import Deployed, FrontMember, ParetoDocument, TeacherFigures
from automl.run.layout import RESULT_COLUMNS
from automl.trial import TrialRecord


def report_title(name: str) -> str:
    return f"Compression search: {name}"


def trial_points(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """Completed trials as report points (the shape `RunDir.read_trial_points` reads back)."""
    return [
        {"number": r.number, **r.result.model_dump(include=set(RESULT_COLUMNS))}
        for r in records
        if r.state == "COMPLETE" and r.result is not None
    ]


def build_report(pareto: ParetoDocument, points: list[dict[str, Any]], title: str) -> str:
    """The page for `pareto` and every completed trial's `points`. When `report` has
    re-measured the front, a second figure shows the deployed latencies."""
    teacher = pareto.teacher.model_dump()
    front_numbers = {m.trial for m in pareto.front}
    others = [p for p in points if p["number"] not in front_numbers]
    front = [m.model_dump() for m in sorted(pareto.front, key=lambda m: m.latency_ms)]
    axes = [o for o in OBJECTIVES if o.direction == "minimize"]
    fig = make_subplots(
        rows=1,
        cols=len(axes),
        subplot_titles=[f"validation accuracy vs {o.label}" for o in axes],
    )
    for col, objective in enumerate(axes, start=1):
        key, scale = objective.name, objective.scale
        for group, name, style in (
            (others, "dominated trials", {"color": "#9aa5b1", "size": 7, "opacity": 0.6}),
            (front, "Pareto front", {"color": "#d9480f", "size": 10, "line": {"width": 1}}),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[p[key] * scale for p in group],
                    y=[p["val_accuracy"] for p in group],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker=style,
                    text=[f"trial {p.get('number', p.get('trial'))}" for p in group],
                    hovertemplate="%{text}<br>%{x:.3f}<br>acc %{y:.4f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_trace(_teacher_marker(teacher, teacher[key] * scale, col == 1), row=1, col=col)
        fig.update_xaxes(title_text=objective.label, type="log", row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=520, template="plotly_white", legend={"orientation": "h"})
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-plots")
    measured = _measured_section(pareto) if pareto.measurement is not None else ""
    return _PAGE.format(
        title=html.escape(title),
        summary=_summary(pareto),
        plot=plot,
        measured=measured,
        table=_front_table(pareto),
    )


def _teacher_marker(teacher: dict[str, Any], x: float, legend: bool) -> go.Scatter:
    return go.Scatter(
        x=[x],
        y=[teacher["val_accuracy"]],
        mode="markers+text",
        name=f"teacher ({teacher['model']})",
        legendgroup="teacher",
        showlegend=legend,
        marker={"symbol": "star", "size": 16, "color": "#1c7ed6"},
        text=["teacher"],
        textposition="bottom left",
    )


def _measured_section(pareto: ParetoDocument) -> str:
    """Front and teacher re-measured side by side, per runtime, at each batch size."""
    assert pareto.measurement is not None
    meas = pareto.measurement.model_dump()
    batches = [f"batch_{b}" for b in meas["batch_sizes"]]
    teacher = pareto.teacher.model_dump()
    front = [m.model_dump() for m in pareto.front if m.measured_latency_ms is not None]
    fig = make_subplots(
        rows=1, cols=len(batches), subplot_titles=[b.replace("_", " ") for b in batches]
    )
    colours = {"torch": "#d9480f", "onnxruntime": "#2b8a3e"}
    for col, batch in enumerate(batches, start=1):
        for runtime, colour in colours.items():
            group = [m for m in front if batch in m["measured_latency_ms"][runtime]]
            fig.add_trace(
                go.Scatter(
                    x=[m["measured_latency_ms"][runtime][batch] for m in group],
                    y=[m["val_accuracy"] for m in group],
                    mode="markers",
                    name=runtime,
                    legendgroup=runtime,
                    showlegend=col == 1,
                    marker={"color": colour, "size": 10},
                    text=[
                        f"trial {m['trial']} ({(m['deployed'] or {}).get('format', '-')})"
                        for m in group
                    ],
                    hovertemplate="%{text}<br>%{x:.3f} ms<br>acc %{y:.4f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            t_ms = teacher["measured_latency_ms"][runtime].get(batch)
            if t_ms is not None:
                marker = _teacher_marker(teacher, t_ms, col == 1 and runtime == "torch")
                marker.marker.color = colour
                fig.add_trace(marker, row=1, col=col)
        fig.update_xaxes(title_text="latency per call (ms)", type="log", row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=460, template="plotly_white", legend={"orientation": "h"})
    plot = fig.to_html(full_html=False, include_plotlyjs=False, div_id="deployed-plots")
    return (
        "<h2>Front re-measured in its deployed forms</h2>"
        f"<p>{html.escape(meas['what'])}: {meas['rounds']} rounds of {meas['calls_per_round']} "
        f"calls, {meas['threads']} thread(s), on {html.escape(meas['machine'])}, "
        f"{html.escape(meas['measured_at'])}. ONNX Runtime runs int8 QDQ models for students "
        "of at most 8 bits and fp32 otherwise; bit-widths below 8 run as int8 (no sub-byte "
        "kernels), so they shrink the packed size only.</p>" + plot
    )


def _summary(pareto: ParetoDocument) -> str:
    t = pareto.teacher.model_dump()
    knee = pareto.knee_trial
    knee_text = (
        f" Knee point: <b>trial {knee}</b> (closest to the ideal with accuracy, deployed "
        "latency and size each scaled over the front)."
        if knee is not None
        else ""
    )
    return (
        f"<p>Reference: teacher <b>{html.escape(t['model'])}</b>, val accuracy "
        f"{t['val_accuracy']:.4f}, test accuracy {t['test_accuracy']:.4f}, latency "
        f"{t['latency_ms']:.3f} ms, size {t['size_bytes'] / 1024:.0f} KiB. "
        f"Front: {len(pareto.front)} models; hypervolume {pareto.hypervolume:.4f} "
        f"(in {html.escape(pareto.hypervolume_space)}, reference: zero accuracy and the "
        f"teacher's latency and size).{knee_text}</p>"
    )


def technique_columns(member: FrontMember) -> dict[str, str]:
    """What each of the student's techniques says of it, by column label."""
    arch = member.architecture
    columns: dict[str, str] = {}
    for name in arch.techniques:
        columns.update(get_technique(name).describe(arch.params(name)))
    return columns


def _front_table(pareto: ParetoDocument) -> str:
    t: TeacherFigures = pareto.teacher
    meas = pareto.measurement
    batches = [f"batch_{b}" for b in meas.batch_sizes] if meas is not None else []
    members = sorted(pareto.front, key=lambda m: m.latency_ms)
    described = [technique_columns(m) for m in members]
    labels = list(dict.fromkeys(k for d in described for k in d))
    head = (
        "<tr><th>trial</th><th>val acc</th><th>test acc</th><th>search latency ms</th>"
        "<th>speed-up</th><th>size KiB (packed)</th><th>compression</th>"
        + "".join(
            f"<th>{rt} {b.replace('_', ' ')} ms (speed-up)</th>"
            for rt in ("torch", "onnxruntime")
            for b in batches
        )
        + ("<th>ONNX</th><th>ONNX KiB</th>" if meas is not None else "")
        + "<th>params</th><th>MACs</th>"
        + "".join(f"<th>{html.escape(label)}</th>" for label in labels)
        + "<th>weights</th></tr>"
    )
    rows = []
    for m, columns in zip(members, described, strict=True):
        knee = " (knee)" if m.trial == pareto.knee_trial else ""
        cells = [
            f"{m.trial}{knee}",
            f"{m.val_accuracy:.4f}",
            f"{m.test_accuracy:.4f}",
            f"{m.latency_ms:.3f}",
            f"{t.latency_ms / m.latency_ms:.2f}x",
            f"{m.size_bytes / 1024:.1f}",
            f"{t.size_bytes / m.size_bytes:.1f}x",
        ]
        if meas is not None:
            for rt in ("torch", "onnxruntime"):
                for b in batches:
                    ms = (m.measured_latency_ms or {}).get(rt, {}).get(b)
                    up = (m.speedup or {}).get(rt, {}).get(b)
                    cells.append("-" if ms is None or up is None else f"{ms:.3f} ({up:.1f}x)")
            if isinstance(m.deployed, Deployed):
                shipped = m.deployed.format + (" (int8 failed)" if m.deployed.fallback else "")
                cells += [shipped, f"{m.deployed.onnx_bytes / 1024:.1f}"]
            else:
                cells += ["failed check", "-"]
        cells += [f"{m.params:,}", f"{m.macs:,}"]
        cells += [columns.get(label, "-") for label in labels]
        cells.append(m.weights)
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table id='front'>{head}{''.join(rows)}</table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #212529; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #dee2e6; padding: 4px 8px; text-align: right; }}
th {{ background: #f1f3f5; }}
</style></head><body>
<h1>{title}</h1>
{summary}
<p>Search latency is the median of timed batch-1 forward passes of the PyTorch form on the
search's device, taken when each trial ended. Weight bits below 32 shrink the size; they are
fake-quantized in PyTorch and bring no speed-up there. Speed-ups and compression are against
the teacher, measured the same way.</p>
{plot}
{measured}
<h2>Pareto front</h2>
{table}
</body></html>
"""
