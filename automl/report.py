"""report.html: a self-contained plotly page (plotly.js inlined, so it opens offline).

The page only formats what pareto.json and the trial records already hold.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from automl.rundir import RESULT_COLUMNS, TrialRecord


def trial_points(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """Completed trials as report points (the shape `runs.read_trial_points` reads back)."""
    return [
        {"number": r.number, **r.result.model_dump(include=set(RESULT_COLUMNS))}
        for r in records
        if r.state == "COMPLETE" and r.result is not None
    ]


def build_report(pareto: dict[str, Any], points: list[dict[str, Any]], title: str) -> str:
    """The page for `pareto` (pareto.json) and every completed trial's `points`. When `report`
    has re-measured the front, a second figure shows the deployed latencies."""
    teacher = pareto["teacher"]
    front_numbers = {m["trial"] for m in pareto["front"]}
    others = [p for p in points if p["number"] not in front_numbers]
    front = sorted(pareto["front"], key=lambda m: m["latency_ms"])
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "validation accuracy vs latency (search, PyTorch, batch 1)",
            "validation accuracy vs size",
        ),
    )
    for col, key, scale in ((1, "latency_ms", 1.0), (2, "size_bytes", 1 / 1024)):
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
    fig.update_xaxes(title_text="latency (ms)", type="log", row=1, col=1)
    fig.update_xaxes(title_text="size (KiB, packed)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=520, template="plotly_white", legend={"orientation": "h"})
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-plots")
    measured = ""
    if "measurement" in pareto:
        measured = _measured_section(pareto)
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


def _measured_section(pareto: dict[str, Any]) -> str:
    """Front and teacher re-measured side by side, per runtime, at each batch size."""
    meas = pareto["measurement"]
    batches = [f"batch_{b}" for b in meas["batch_sizes"]]
    teacher = pareto["teacher"]
    fig = make_subplots(
        rows=1, cols=len(batches), subplot_titles=[b.replace("_", " ") for b in batches]
    )
    colours = {"torch": "#d9480f", "onnxruntime": "#2b8a3e"}
    for col, batch in enumerate(batches, start=1):
        for runtime, colour in colours.items():
            group = [m for m in pareto["front"] if batch in m["measured_latency_ms"][runtime]]
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
                        f"trial {m['trial']} ({m['deployed'].get('format', '-')})" for m in group
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


def _summary(pareto: dict[str, Any]) -> str:
    t = pareto["teacher"]
    knee = pareto.get("knee_trial")
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
        f"Front: {len(pareto['front'])} models; hypervolume {pareto['hypervolume']:.4f} "
        f"(in {html.escape(pareto['hypervolume_space'])}, reference: zero accuracy and the "
        f"teacher's latency and size).{knee_text}</p>"
    )


def _front_table(pareto: dict[str, Any]) -> str:
    t = pareto["teacher"]
    measured = "measurement" in pareto
    batches = [f"batch_{b}" for b in pareto["measurement"]["batch_sizes"]] if measured else []
    head = (
        "<tr><th>trial</th><th>val acc</th><th>test acc</th><th>search latency ms</th>"
        "<th>speed-up</th><th>size KiB (packed)</th><th>compression</th>"
        + "".join(
            f"<th>{rt} {b.replace('_', ' ')} ms (speed-up)</th>"
            for rt in ("torch", "onnxruntime")
            for b in batches
        )
        + ("<th>ONNX</th><th>ONNX KiB</th>" if measured else "")
        + "<th>params</th><th>MACs</th><th>bits per stage</th><th>channels kept per stage</th>"
        "<th>weights</th></tr>"
    )
    rows = []
    for m in sorted(pareto["front"], key=lambda m: m["latency_ms"]):
        arch = m["architecture"] or {}
        n = sum(1 for k in arch if k.endswith(".bits"))
        bits = "/".join(str(arch[f"stage{i}.bits"]) for i in range(n))
        keep = "/".join(f"{arch[f'stage{i}.channel_keep']:.3g}" for i in range(n))
        knee = " (knee)" if m["trial"] == pareto.get("knee_trial") else ""
        cells = [
            f"{m['trial']}{knee}",
            f"{m['val_accuracy']:.4f}",
            f"{m['test_accuracy']:.4f}",
            f"{m['latency_ms']:.3f}",
            f"{t['latency_ms'] / m['latency_ms']:.2f}x",
            f"{m['size_bytes'] / 1024:.1f}",
            f"{t['size_bytes'] / m['size_bytes']:.1f}x",
        ]
        if measured:
            for rt in ("torch", "onnxruntime"):
                for b in batches:
                    ms = m["measured_latency_ms"][rt].get(b)
                    cells.append("-" if ms is None else f"{ms:.3f} ({m['speedup'][rt][b]:.1f}x)")
            dep = m["deployed"]
            if "format" in dep:
                cells += [dep["format"], f"{dep['onnx_bytes'] / 1024:.1f}"]
            else:
                cells += ["failed check", "-"]
        cells += [f"{m['params']:,}", f"{m['macs']:,}", bits, keep, m["weights"]]
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
