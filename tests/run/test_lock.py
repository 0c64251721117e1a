"""The run directory's lock: a second process is refused with the holder's PID, a killed
holder's lock is taken over, and one process may nest holds (search runs finalize)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from automl.config import validate_config
from automl.errors import UserError
from automl.run.lock import run_lock
from automl.run.search import run_search
from tests.conftest import ROOT, tiny_raw

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from automl.run.lock import run_lock
    with run_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_second_process_is_refused_until_the_holder_dies(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = pytest.raises(UserError, match=rf"{run} is in use by process {holder.pid} ")
        with refused, run_lock(run):
            pass
        raw = tiny_raw(tmp_path / "teachers", run)
        with pytest.raises(UserError, match=f"in use by process {holder.pid}"):
            run_search(validate_config(raw, "test"))  # refused before any teacher training
        assert not (tmp_path / "teachers").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        holder.wait()
    with run_lock(run):
        with run_lock(run):  # nested in one process
            pass
        assert (run / ".lock").read_text().strip().isdigit()
