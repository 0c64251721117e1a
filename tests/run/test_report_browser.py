"""report.html in a real headless Chromium (Debian's package): no console errors, both plots
drawn with their points, and the re-measured plots too."""

from __future__ import annotations

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


def test_rebuilt_report_shows_the_deployed_plots(browser, searched_run, tmp_path):
    from automl.deploy.remeasure import MeasureSettings, rebuild_report
    from automl.run.finished import open_search_run

    run_path = tmp_path / "run"
    shutil.copytree(searched_run, run_path)
    run = open_search_run(run_path)
    rebuild_report(run, MeasureSettings(batch_sizes=(1, 4), rounds=1, calls=2, warmup=1))
    page, errors = _open(browser, run_path / "report.html")
    assert page.evaluate(PLOTS, "pareto-plots")["subplots"] == 2
    deployed = page.evaluate(PLOTS, "deployed-plots")
    assert deployed["subplots"] == 2  # batch 1 and batch 4
    assert deployed["points"] >= 2 * len(run.front)
    assert errors == []
