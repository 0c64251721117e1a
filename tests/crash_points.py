"""A plugin for the crash campaign (tests/run/test_crash_campaign.py): imported through
`plugins: [tests.crash_points]`, it SIGKILLs its own process at the moment that the
environment variable AUTOML_CRASH_AT names, so that each kill lands exactly where the test
wants it. The process gets no chance to clean up, as with `kill -9` or the OOM killer.

    teacher      after the teacher's first training epoch
    trial:N      as the Nth student of this process starts training (its trial is running)
    weights:N    after the Nth student's weights are written, before its trial is completed
    report       during the search's final writes (trials.csv and pareto.json written,
                 report.html and run.json not yet)
    finalize:N   after the Nth model that finalize retrained is saved

Unset, the plugin changes nothing.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from typing import Any

import automl.run.finalize
import automl.run.search
import automl.trial
import teachers.cache

POINT, _, NTH = os.environ.get("AUTOML_CRASH_AT", "").partition(":")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _on_call(module: Any, name: str, when: str, before: bool) -> None:
    """Kill on the NTH call of `module.name`, before or after it runs, when POINT is `when`."""
    original: Callable[..., Any] = getattr(module, name)
    calls = 0

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        due = calls == int(NTH or 1)
        if due and before:
            die()
        result = original(*args, **kwargs)
        if due:
            die()
        return result

    if when == POINT:
        setattr(module, name, wrapper)


def _teacher_fit(*args: Any, **kwargs: Any) -> Any:
    model, train, loss, settings, device, seed, *_ = args

    def after_first_epoch(epoch: int) -> bool:
        die()
        return True

    return _original_teacher_fit(model, train, loss, settings, device, seed, after_first_epoch)


_original_teacher_fit = teachers.cache.fit
if POINT == "teacher":
    teachers.cache.fit = _teacher_fit
_on_call(automl.trial, "fit", "trial", before=True)
_on_call(automl.run.search, "write_student", "weights", before=False)
_on_call(automl.run.search, "build_report", "report", before=True)
_on_call(automl.run.finalize, "save_student", "finalize", before=False)
