"""report.html: a self-contained plotly page (plotly.js inlined, so it opens offline).

The page only formats what pareto.json and the trial records already hold.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from automl.rundir import TrialRecord


def build_report(pareto: dict[str, Any], records: list[TrialRecord], title: str) -> str:
    teacher = pareto["teacher"]
    front_numbers = {m["trial"] for m in pareto["front"]}
    done = [r for r in records if r.state == "COMPLETE" and r.result is not None]
    others = [r for r in done if r.number not in front_numbers]
    front = sorted(
        (r for r in done if r.number in front_numbers), key=lambda r: r.result.latency_ms
    )
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("validation accuracy vs latency (batch 1)", "validation accuracy vs size"),
    )
    for col, key, scale in ((1, "latency_ms", 1.0), (2, "size_bytes", 1 / 1024)):
        for group, name, style in (
            (others, "dominated trials", {"color": "#9aa5b1", "size": 7, "opacity": 0.6}),
            (front, "Pareto front", {"color": "#d9480f", "size": 10, "line": {"width": 1}}),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[getattr(r.result, key) * scale for r in group],
                    y=[r.result.val_accuracy for r in group],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker=style,
                    text=[f"trial {r.number}" for r in group],
                    hovertemplate="%{text}<br>%{x:.3f}<br>acc %{y:.4f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=[teacher[key] * scale],
                y=[teacher["val_accuracy"]],
                mode="markers+text",
                name=f"teacher ({teacher['model']})",
                legendgroup="teacher",
                showlegend=col == 1,
                marker={"symbol": "star", "size": 16, "color": "#1c7ed6"},
                text=["teacher"],
                textposition="bottom left",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="latency (ms)", type="log", row=1, col=1)
    fig.update_xaxes(title_text="size (KiB, packed)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=520, template="plotly_white", legend={"orientation": "h"})
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-plots")
    return _PAGE.format(
        title=html.escape(title),
        summary=_summary(pareto),
        plot=plot,
        table=_front_table(pareto),
    )


def _summary(pareto: dict[str, Any]) -> str:
    t = pareto["teacher"]
    return (
        f"<p>Teacher <b>{html.escape(t['model'])}</b>: val accuracy {t['val_accuracy']:.4f}, "
        f"test accuracy {t['test_accuracy']:.4f}, latency {t['latency_ms']:.3f} ms, "
        f"size {t['size_bytes'] / 1024:.0f} KiB. Front: {len(pareto['front'])} models; "
        f"hypervolume {pareto['hypervolume']:.4f} (in {html.escape(pareto['hypervolume_space'])},"
        f" reference: zero accuracy and the teacher's latency and size).</p>"
    )


def _front_table(pareto: dict[str, Any]) -> str:
    t = pareto["teacher"]
    head = (
        "<tr><th>trial</th><th>val acc</th><th>test acc</th><th>latency ms</th>"
        "<th>speed-up</th><th>size KiB</th><th>compression</th><th>params</th><th>MACs</th>"
        "<th>bits per stage</th><th>channels kept per stage</th><th>weights</th></tr>"
    )
    rows = []
    for m in sorted(pareto["front"], key=lambda m: m["latency_ms"]):
        arch = m["architecture"] or {}
        n = sum(1 for k in arch if k.endswith(".bits"))
        bits = "/".join(str(arch[f"stage{i}.bits"]) for i in range(n))
        keep = "/".join(f"{arch[f'stage{i}.channel_keep']:.3g}" for i in range(n))
        rows.append(
            f"<tr><td>{m['trial']}</td><td>{m['val_accuracy']:.4f}</td>"
            f"<td>{m['test_accuracy']:.4f}</td><td>{m['latency_ms']:.3f}</td>"
            f"<td>{t['latency_ms'] / m['latency_ms']:.2f}x</td>"
            f"<td>{m['size_bytes'] / 1024:.1f}</td>"
            f"<td>{t['size_bytes'] / m['size_bytes']:.1f}x</td>"
            f"<td>{m['params']:,}</td><td>{m['macs']:,}</td><td>{bits}</td><td>{keep}</td>"
            f"<td>{html.escape(m['weights'])}</td></tr>"
        )
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
<p>Latency is the median of timed batch-1 forward passes of the deployed PyTorch form on the
search's device. Weight bits below 32 shrink the size; they are fake-quantized in PyTorch and
bring no speed-up there.</p>
{plot}
<h2>Pareto front</h2>
{table}
</body></html>
"""
