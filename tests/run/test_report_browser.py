"""report.html in a real headless Chromium (Debian's package): no console errors, both plots
drawn with their points, and the re-measured plots too."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the background-networking flags Chromium tries to reach Google at start-up, which a
# closed network refuses with console noise.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _open(browser, page_path: Path):
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.resolve().as_uri())
    page.wait_for_selector("#pareto-plots .main-svg")
    return page, errors


PLOTS = """id => {
  const div = document.getElementById(id);
  if (!div) return null;
  return {
    subplots: div.querySelectorAll('.cartesianlayer .subplot').length,
    points: div.querySelectorAll('.scatterlayer .point').length,
    traces: div.data.length,
  };
}"""


def test_search_report_loads_cleanly_with_both_plots(browser, searched_run):
    page, errors = _open(browser, searched_run / "report.html")
    plots = page.evaluate(PLOTS, "pareto-plots")
    assert plots["subplots"] == 2  # accuracy vs latency, accuracy vs size
    assert plots["points"] >= 2 * 4 + 2  # every completed trial in both, and the teacher
    assert page.evaluate(PLOTS, "deployed-plots") is None  # not re-measured yet
    assert page.locator("table#front tr").count() >= 2
    assert errors == []


@pytest.fixture(scope="module")
def reported(searched_run, tmp_path_factory) -> Path:
    """A copy of the searched run after `report` (batch 1 and 4, quick timings)."""
    from automl.deploy.remeasure import MeasureSettings, rebuild_report
    from automl.run.finished import open_search_run

    run_path = tmp_path_factory.mktemp("reported") / "run"
    shutil.copytree(searched_run, run_path)
    rebuild_report(
        open_search_run(run_path),
        MeasureSettings(batch_sizes=(1, 4), rounds=1, calls=2, warmup=1),
    )
    return run_path


def test_rebuilt_report_shows_the_deployed_plots(browser, reported):
    from automl.run.finished import open_search_run

    page, errors = _open(browser, reported / "report.html")
    assert page.evaluate(PLOTS, "pareto-plots")["subplots"] == 2
    deployed = page.evaluate(PLOTS, "deployed-plots")
    assert deployed["subplots"] == 4  # PyTorch and ONNX Runtime, each at batch 1 and 4
    assert deployed["points"] >= 4 * len(open_search_run(reported).front)
    assert errors == []


# Per plot: the panels' teacher markers, the front's labels and the knee.
MARKS = """id => {
  const div = document.getElementById(id);
  const teachers = {};
  for (const t of div.data.filter(t => t.legendgroup === 'teacher')) {
    teachers[t.xaxis] = (teachers[t.xaxis] || 0) + t.x.length;
  }
  const front = div.data.filter(t => t.name === 'Pareto front');
  return {
    axes: div.querySelectorAll('.cartesianlayer .subplot').length,
    teachers: Object.values(teachers),
    labels: front.flatMap(t => t.text),
    knees: div.data.filter(t => t.legendgroup === 'knee').length,
    drawnLabels: div.querySelectorAll('.scatterlayer .textpoint').length,
  };
}"""

# Whether the legend's box meets any axis title's box, and how wide things are.
OVERLAP = """id => {
  const div = document.getElementById(id);
  const legend = div.querySelector('.legend').getBoundingClientRect();
  const meets = r => !(r.right < legend.left || legend.right < r.left ||
                       r.bottom < legend.top || legend.bottom < r.top);
  const titles = [...div.querySelectorAll('.infolayer text')]
    .filter(t => /^[xy][0-9]*title$/.test(t.getAttribute('class')));
  return [titles.length, titles.filter(t => meets(t.getBoundingClientRect())).length];
}"""


def test_the_page_reads_at_1280_px(browser, reported, tmp_path):
    """At 1280 px nothing runs off the page: the table scrolls inside its box; the legend is
    clear of every axis title; each panel has one teacher; front points carry their trial
    numbers; the knee is ringed; sizes are kB; a screenshot is taken of the whole page."""
    from automl.run.finished import open_search_run

    run = open_search_run(reported)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((reported / "report.html").resolve().as_uri())
    page.wait_for_selector("#deployed-plots .main-svg")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    box = "(() => { const b = document.querySelector('.table-box');" + (
        " return [b.getBoundingClientRect().right, b.scrollWidth, b.clientWidth]; })()"
    )
    right, _, _ = page.evaluate(box)
    assert right <= 1280
    # at a width the table cannot fit, it scrolls inside its box and the page does not
    narrow = browser.new_page(viewport={"width": 480, "height": 900})
    narrow.goto((reported / "report.html").resolve().as_uri())
    right, inner, shown = narrow.evaluate(box)
    assert inner > shown and right <= 480
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 480
    front = sorted(str(m.trial) for m in run.front)
    for plot in ("pareto-plots", "deployed-plots"):
        marks = page.evaluate(MARKS, plot)
        assert marks["teachers"] == [1] * marks["axes"], plot
        assert sorted(set(marks["labels"])) == front and marks["drawnLabels"] >= len(front)
        assert marks["knees"] == marks["axes"] and run.pareto.knee_trial is not None
        titles, overlapped = page.evaluate(OVERLAP, plot)
        # an x title per panel; a y title per panel (deployed) or for the row (search)
        assert titles == (2 * marks["axes"] if plot == "deployed-plots" else marks["axes"] + 1)
        assert overlapped == 0, plot
    text = page.inner_text("body")
    assert "KiB" not in text and "packed kB" in text and "ONNX kB" in text
    assert text.count("Speed-up (×) is the teacher's latency divided by the model's") == 1
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    width = int.from_bytes(shot.read_bytes()[16:20], "big")  # the PNG header's IHDR width
    assert width == 1280


def test_the_table_says_why_a_check_failed_and_why_int8_fell_back(reported):
    from automl.run.documents import DeployFailed
    from automl.run.finished import open_search_run
    from automl.run.report import build_report

    run = open_search_run(reported)
    pareto = run.pareto.model_copy(deep=True)
    failed, fell_back = pareto.front[0], pareto.front[-1]
    assert failed is not fell_back
    failed.deployed = DeployFailed(error="no ONNX form scores like the PyTorch model (fp32: ...)")
    fell_back.deployed = fell_back.deployed.model_copy(
        update={"format": "fp32", "fallback": "int8 failed its check (int8: -3.10 points ...)"}
    )
    page = build_report(pareto, run.run_dir.read_trial_points(), "t", run.config.latency)
    assert "failed check<div class='why'>no ONNX form scores like the PyTorch model" in page
    assert "fp32<div class='why'>int8 failed its check (int8: -3.10 points" in page


def test_the_page_says_what_its_latency_is_for_the_run_it_describes(searched_run):
    """The sentence follows the run's `latency` config: ONNX Runtime where the search timed
    it (the default), PyTorch eager where it timed that; with its repeats, batch, threads."""
    from automl.config import LatencyConfig
    from automl.run.report import latency_sentence

    run = json.loads((searched_run / "run.json").read_text())["config"]["latency"]
    page = (searched_run / "report.html").read_text()
    assert run["runtime"] == "onnxruntime"
    said = latency_sentence(LatencyConfig.model_validate(run))
    assert html.escape(said) in page and "ONNX Runtime" in said and "PyTorch" not in said
    assert f"median of {run['repeats']} timed batch-{run['batch_size']} calls" in said
    eager = latency_sentence(LatencyConfig(runtime="torch", repeats=40, threads=2))
    assert "PyTorch eager on the cpu" in eager and "ONNX" not in eager
    assert "median of 40 timed batch-1 calls" in eager and "with 2 thread(s)" in eager
