"""Fault injection: each kind of file a search writes fails once (a full disk, a read-only
mount, no permission), and the search stops with one message naming the file, leaves no
temporary file, and a resume (or, before run.json, the same command) finishes the run."""

from __future__ import annotations

import csv
import errno
import os
import re
from pathlib import Path

import pytest

from automl import files
from automl.config import validate_config
from automl.errors import UserError
from automl.run.search import resume_config, run_search
from tests.conftest import tiny_raw

CODES = (errno.ENOSPC, errno.EROFS, errno.EACCES)


def _config(teacher_cache: Path, out: Path):
    raw = tiny_raw(teacher_cache, out, budget=1)
    raw["search"]["enqueue"] = [{"blocks": "low", "channel_keep": "low"}]  # a quick first trial
    return validate_config(raw, "test")


def _kind(path: Path) -> str:
    """What a write is, whatever its trial: trial_0001.safetensors -> trial_N.safetensors."""
    return re.sub(r"trial_\d+", "trial_N", path.name.removesuffix(".tmp"))


@pytest.fixture(scope="module")
def writes(tiny, teacher_cache, tmp_path_factory) -> list[str]:
    """The kinds of file a search writes, in the order of their first write."""
    seen: list[str] = []
    real = files._write_bytes

    def record(path: Path, data: bytes) -> None:
        seen.append(_kind(path))
        real(path, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(files, "_write_bytes", record)
    try:
        run_search(_config(teacher_cache, tmp_path_factory.mktemp("clean") / "run"))
    finally:
        mp.undo()
    return list(dict.fromkeys(seen))


KINDS = ["run.json", "trial_N.safetensors", "trial_N.json", "trials.csv", "pareto.json"]


def test_a_search_writes_through_the_one_module(writes):
    """Every kind is failed below: a new kind of file fails this test until it is counted."""
    assert writes == [*KINDS, "report.html"]


@pytest.mark.parametrize("k", range(len(KINDS) + 1))
def test_each_write_of_a_search_fails_safely(tiny, teacher_cache, tmp_path, monkeypatch, writes, k):
    kind, code = writes[k], CODES[k % len(CODES)]
    out = tmp_path / "run"
    real = files._write_bytes

    def fail_once(path: Path, data: bytes) -> None:
        if _kind(path) == kind and not failed:
            failed.append(path)
            path.write_bytes(data[: len(data) // 2])  # half of it reached the disk
            raise OSError(code, os.strerror(code))
        real(path, data)

    failed: list[Path] = []
    monkeypatch.setattr(files, "_write_bytes", fail_once)
    with pytest.raises(UserError) as caught:
        run_search(_config(teacher_cache, out))
    target = failed[0].with_name(failed[0].name.removesuffix(".tmp"))
    assert f"cannot write {target}: {os.strerror(code)}" in str(caught.value)
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(files, "_write_bytes", real)
    if (out / "run.json").is_file():
        assert "continue with --resume" in str(caught.value)
        summary = run_search(resume_config(out), resume=True)
    else:  # the run had not begun: the same command starts it
        summary = run_search(_config(teacher_cache, out))
    assert summary.completed == 1
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert sum(r["state"] == "COMPLETE" for r in rows) == 1
    for member in json_front(out):
        assert (out / member).is_file()


def json_front(out: Path) -> list[str]:
    import json

    return [m["weights"] for m in json.loads((out / "pareto.json").read_text())["front"]]
