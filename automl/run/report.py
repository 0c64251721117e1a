"""report.html: a self-contained plotly page (plotly.js inlined, so it opens offline).

The page only formats what pareto.json and the trial records already hold. Its plots have one
panel per objective against accuracy; its table shows what each technique says of a student
(`Technique.describe`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from automl.compress import get_technique
from automl.config import LatencyConfig
from automl.objectives import OBJECTIVES
from automl.run.documents import Deployed, FrontMember, ParetoDocument, TeacherFigures
from automl.run.layout import RESULT_COLUMNS
from automl.trial import TrialRecord


def report_title(name: str) -> str:
    return f"Compression search: {name}"


def trial_points(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """Completed trials within the limits as report points (the shape
    `RunDir.read_trial_points` reads back)."""
    return [
        {"number": r.number, **r.result.model_dump(include=set(RESULT_COLUMNS))}
        for r in records
        if r.state == "COMPLETE" and r.result is not None and not r.rejected
    ]


RUNTIMES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
SPEEDUP = (
    "Speed-up (×) is the teacher's latency divided by the model's, on the same runtime, batch "
    "size and machine; compression is the teacher's fp32 size divided by the model's packed size."
)
# a vertical legend right of the plots never covers an axis or its title
LEGEND = {"x": 1.01, "y": 1.0, "xanchor": "left", "yanchor": "top"}


def latency_sentence(latency: LatencyConfig) -> str:
    """What the search's latency of this run is: the runtime, device, batch, threads and
    moment, from the run's own `latency` config (the page says nothing it does not know)."""
    if latency.runtime == "onnxruntime":
        form = (
            "the deployed form in ONNX Runtime (CPU; int8 QDQ for students whose weights are "
            "all at most 8 bits, fp32 otherwise)"
        )
        bits = (
            "Weight bits below 32 shrink the size; below 8 they are stored packed and run as "
            "int8, since no kernel here computes with fewer bits."
        )
    else:
        form = f"the deployed form in PyTorch eager on the {latency.device}"
        bits = (
            "Weight bits below 32 shrink the size; they are fake-quantized in PyTorch and "
            "bring no speed-up there."
        )
    return (
        f"Search latency is the median of {latency.repeats} timed batch-{latency.batch_size} "
        f"calls of {form}, with {latency.threads} thread(s) after {latency.warmup} warm-up "
        "calls, measured on each student before it trained, on the machine that ran its "
        f"trial. {bits}"
    )


def build_report(
    pareto: ParetoDocument, points: list[dict[str, Any]], title: str, latency: LatencyConfig
) -> str:
    """The page for `pareto` and every completed trial's `points`; `latency` is the run's
    config, which the page describes. When `report` has re-measured the front, a second
    figure shows the deployed latencies."""
    teacher = pareto.teacher.model_dump()
    front_numbers = {m.trial for m in pareto.front}
    others = [p for p in points if p["number"] not in front_numbers]
    front = [m.model_dump() for m in sorted(pareto.front, key=lambda m: m.latency_ms)]
    knee = [m for m in front if m["trial"] == pareto.knee_trial]
    axes = [o for o in OBJECTIVES if o.direction == "minimize"]
    fig = make_subplots(
        rows=1,
        cols=len(axes),
        subplot_titles=[f"validation accuracy vs {o.label}" for o in axes],
    )
    for col, objective in enumerate(axes, start=1):
        key, scale = objective.name, objective.scale

        def x_of(p: dict[str, Any], key: str = key, scale: float = scale) -> float:
            return p[key] * scale

        fig.add_trace(_points(others, x_of, "dominated trials", col, _DOMINATED), row=1, col=col)
        fig.add_trace(_points(front, x_of, "Pareto front", col, _FRONT), row=1, col=col)
        if knee:
            fig.add_trace(_knee(knee[0], x_of, col), row=1, col=col)
        fig.add_trace(_teacher_marker(teacher, teacher[key] * scale, col == 1), row=1, col=col)
        fig.update_xaxes(title_text=objective.label, type="log", row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=520, template="plotly_white", legend=LEGEND)
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-plots")
    measured = _measured_section(pareto) if pareto.measurement is not None else ""
    return _PAGE.format(
        title=html.escape(title),
        summary=_summary(pareto),
        latency=html.escape(latency_sentence(latency)),
        speedup=html.escape(SPEEDUP),
        plot=plot,
        measured=measured,
        table=_front_table(pareto),
    )


_DOMINATED = {"color": "#9aa5b1", "size": 7, "opacity": 0.6}
_FRONT = {"color": "#d9480f", "size": 10, "line": {"width": 1}}


def _number(p: dict[str, Any]) -> int:
    return p.get("number", p.get("trial"))


def _points(
    group: list[dict[str, Any]],
    x_of: Callable[[dict[str, Any]], float],
    name: str,
    col: int,
    style: dict[str, Any],
    hover: Callable[[dict[str, Any]], str] = lambda p: "",
) -> go.Scatter:
    """Trials as points; the front's carry their trial numbers as labels, and `hover` adds
    to each point's hover text."""
    labelled = name == "Pareto front"
    return go.Scatter(
        x=[x_of(p) for p in group],
        y=[p["val_accuracy"] for p in group],
        mode="markers+text" if labelled else "markers",
        name=name,
        legendgroup=name,
        showlegend=col == 1,
        marker=style,
        text=[str(_number(p)) for p in group] if labelled else None,
        textposition="top center",
        textfont={"size": 10},
        customdata=[f"trial {_number(p)}{hover(p)}" for p in group],
        hovertemplate="%{customdata}<br>%{x:.3f}<br>acc %{y:.4f}<extra></extra>",
    )


def _knee(member: dict[str, Any], x_of: Callable[[dict[str, Any]], float], col: int) -> go.Scatter:
    return go.Scatter(
        x=[x_of(member)],
        y=[member["val_accuracy"]],
        mode="markers",
        name=f"knee (trial {member['trial']})",
        legendgroup="knee",
        showlegend=col == 1,
        marker={"symbol": "circle-open", "size": 22, "color": "#212529", "line": {"width": 2}},
        hoverinfo="skip",
    )


def _teacher_marker(teacher: dict[str, Any], x: float, legend: bool) -> go.Scatter:
    return go.Scatter(
        x=[x],
        y=[teacher["val_accuracy"]],
        mode="markers",
        name=f"teacher ({teacher['model']})",
        legendgroup="teacher",
        showlegend=legend,
        marker={"symbol": "star", "size": 16, "color": "#1c7ed6"},
        hovertemplate=f"teacher {html.escape(teacher['model'])}<br>%{{x:.3f}}<br>"
        "acc %{y:.4f}<extra></extra>",
    )


def _measured_section(pareto: ParetoDocument) -> str:
    """Front and teacher re-measured side by side: one panel per runtime and batch size, so
    each panel has one teacher."""
    assert pareto.measurement is not None
    meas = pareto.measurement.model_dump()
    batches = [f"batch_{b}" for b in meas["batch_sizes"]]
    teacher = pareto.teacher.model_dump()
    front = [m.model_dump() for m in pareto.front if m.measured_latency_ms is not None]
    knee = [m for m in front if m["trial"] == pareto.knee_trial]
    panels = [(rt, b) for rt in RUNTIMES for b in batches]
    fig = make_subplots(
        rows=len(RUNTIMES),
        cols=len(batches),
        subplot_titles=[f"{RUNTIMES[rt]}, {b.replace('_', ' ')}" for rt, b in panels],
        vertical_spacing=0.16,
    )
    for k, (runtime, batch) in enumerate(panels):
        row, col = divmod(k, len(batches))
        where = {"row": row + 1, "col": col + 1}

        def x_of(m: dict[str, Any], runtime: str = runtime, batch: str = batch) -> float:
            return m["measured_latency_ms"][runtime][batch]

        group = [m for m in front if batch in m["measured_latency_ms"][runtime]]
        shipped = _points(group, x_of, "Pareto front", k + 1, _FRONT, lambda m: f" ({_shipped(m)})")
        fig.add_trace(shipped, **where)
        if knee and knee[0] in group:
            fig.add_trace(_knee(knee[0], x_of, k + 1), **where)
        t_ms = teacher["measured_latency_ms"][runtime].get(batch)
        if t_ms is not None:
            fig.add_trace(_teacher_marker(teacher, t_ms, k == 0), **where)
        fig.update_xaxes(title_text="latency per call (ms)", type="log", **where)
        fig.update_yaxes(title_text="val accuracy", **where)
    fig.update_layout(height=380 * len(RUNTIMES), template="plotly_white", legend=LEGEND)
    plot = fig.to_html(full_html=False, include_plotlyjs=False, div_id="deployed-plots")
    return (
        "<h2>Front re-measured in its deployed forms</h2>"
        f"<p>{html.escape(meas['what'])}: {meas['rounds']} rounds of {meas['calls_per_round']} "
        f"calls, {meas['threads']} thread(s), on {html.escape(meas['machine'])}, "
        f"{html.escape(meas['measured_at'])}. ONNX Runtime runs int8 QDQ models for students "
        "of at most 8 bits and fp32 otherwise; bit-widths below 8 run as int8 (no sub-byte "
        "kernels), so they shrink the packed size only.</p>" + plot
    )


def _shipped(member: dict[str, Any]) -> str:
    deployed = member.get("deployed") or {}
    if "error" in deployed:
        return "failed check"
    return deployed.get("format", "-") + (" after int8 failed" if deployed.get("fallback") else "")


def _summary(pareto: ParetoDocument) -> str:
    t = pareto.teacher.model_dump()
    knee = pareto.knee_trial
    knee_text = (
        f" Knee point: <b>trial {knee}</b>, ringed in the plots (closest to the ideal with "
        "accuracy, deployed latency and size each scaled over the front)."
        if knee is not None
        else ""
    )
    return (
        f"<p>Reference: teacher <b>{html.escape(t['model'])}</b>, val accuracy "
        f"{t['val_accuracy']:.4f}, test accuracy {t['test_accuracy']:.4f}, latency "
        f"{t['latency_ms']:.3f} ms, size {t['size_bytes'] / 1000:.0f} kB. "
        f"Front: {len(pareto.front)} models; hypervolume {pareto.hypervolume:.4f} "
        f"(in {html.escape(pareto.hypervolume_space)}, reference: zero accuracy and the "
        f"teacher's latency and size).{knee_text} Sizes are in kB of 1000 bytes.</p>"
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
        ["trial", "val acc", "test acc", "params", "MACs", "packed kB", "compression"]
        + (["shipped ONNX", "ONNX kB"] if meas is not None else [])
        + ["search latency ms (×)"]
        + [f"{RUNTIMES[rt]} {b.replace('_', ' ')} ms (×)" for rt in RUNTIMES for b in batches]
        + labels
        + ["weights"]
    )
    rows = []
    for m, columns in zip(members, described, strict=True):
        knee = " (knee)" if m.trial == pareto.knee_trial else ""
        cells = [
            html.escape(c)
            for c in (
                f"{m.trial}{knee}",
                f"{m.val_accuracy:.4f}",
                f"{m.test_accuracy:.4f}",
                f"{m.params:,}",
                f"{m.macs:,}",
                f"{m.size_bytes / 1000:.1f}",
                f"{t.size_bytes / m.size_bytes:.1f}x",
            )
        ]
        if meas is not None:
            cells += _shipped_cells(m)
        cells.append(html.escape(f"{m.latency_ms:.3f} ({t.latency_ms / m.latency_ms:.1f}x)"))
        for rt in RUNTIMES:
            for b in batches:
                ms = (m.measured_latency_ms or {}).get(rt, {}).get(b)
                up = (m.speedup or {}).get(rt, {}).get(b)
                cells.append("-" if ms is None or up is None else f"{ms:.3f} ({up:.1f}x)")
        cells += [html.escape(columns.get(label, "-")) for label in labels]
        cells.append(html.escape(m.weights))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return f"<div class='table-box'><table id='front'>{header}{''.join(rows)}</table></div>"


def _shipped_cells(m: FrontMember) -> list[str]:
    """The deployed form and its file size; a failed check with its reason."""
    if isinstance(m.deployed, Deployed):
        form = html.escape(m.deployed.format)
        if m.deployed.fallback:
            form += f"<div class='why'>{html.escape(m.deployed.fallback)}</div>"
        return [form, f"{m.deployed.onnx_bytes / 1000:.1f}"]
    reason = m.deployed.error if m.deployed is not None else "not exported"
    return [f"failed check<div class='why'>{html.escape(reason)}</div>", "-"]


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #212529; }}
.table-box {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #dee2e6; padding: 4px 8px; text-align: right; }}
th {{ background: #f1f3f5; position: sticky; top: 0; }}
td:first-child, th:first-child {{ position: sticky; left: 0; background: #fff; }}
th:first-child {{ background: #f1f3f5; }}
.why {{ max-width: 28em; white-space: normal; text-align: left; font-size: 0.85em;
  color: #495057; }}
</style></head><body>
<h1>{title}</h1>
{summary}
<p>{latency} {speedup}</p>
{plot}
{measured}
<h2>Pareto front</h2>
<p>Front trials carry their numbers in the plots; hover a point for its figures. Packed kB
counts each weight at its bit-width; the shipped ONNX file is what `pick` exports.</p>
{table}
</body></html>
"""
