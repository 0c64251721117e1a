from __future__ import annotations

import io

from rich.console import Console

from automl.run.progress import PlainProgress, RichProgress, make_progress


def test_plain_lines_when_not_on_a_terminal():
    assert isinstance(make_progress(Console(file=io.StringIO())), PlainProgress)
    assert isinstance(make_progress(Console(file=io.StringIO(), force_terminal=True)), RichProgress)
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.start(10, 2)
    progress.update(3, front_size=2, best_accuracy=0.987, last="#4: acc 0.98")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "search: 2/10 trials done"
    assert lines[1].startswith("trial 3/10 #4: acc 0.98 | front 2 | best acc 0.9870")
