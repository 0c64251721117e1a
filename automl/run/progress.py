"""Search progress: a rich bar on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from automl.controllers.base import SearchProgress


class RichProgress:
    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("front {task.fields[front]}"),
            TextColumn("best acc {task.fields[best]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = None

    def start(self, budget: int, done: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("search", total=budget, completed=done, front=0, best="-")

    def update(self, done: int, front_size: int, best_accuracy: float, last: str) -> None:
        self._bar.update(self._task, completed=done, front=front_size, best=f"{best_accuracy:.4f}")

    def close(self) -> None:
        self._bar.stop()


class PlainProgress:
    def __init__(self, stream=None) -> None:
        self._stream = stream or sys.stdout
        self._budget = 0
        self._start_done = 0
        self._t0 = time.perf_counter()

    def start(self, budget: int, done: int) -> None:
        self._budget, self._start_done, self._t0 = budget, done, time.perf_counter()
        print(f"search: {done}/{budget} trials done", file=self._stream, flush=True)

    def update(self, done: int, front_size: int, best_accuracy: float, last: str) -> None:
        elapsed = time.perf_counter() - self._t0
        new = done - self._start_done
        left = (self._budget - done) * elapsed / new if new > 0 else float("nan")
        print(
            f"trial {done}/{self._budget} {last} | front {front_size} | best acc "
            f"{best_accuracy:.4f} | about {left:.0f}s left",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        pass


def make_progress(console: Console | None = None) -> SearchProgress:
    console = console or Console()
    return RichProgress(console) if console.is_terminal else PlainProgress()
