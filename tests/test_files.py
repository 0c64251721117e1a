"""The one module that writes files: atomic, and a refused write is one message naming it."""

from __future__ import annotations

import errno
import os

import pytest

from automl import files
from automl.files import WriteFailed, write_file


def test_a_write_is_whole_or_absent(tmp_path):
    target = tmp_path / "doc.json"
    write_file(target, "first\r\n")
    assert target.read_bytes() == b"first\r\n"  # as given: no newline translation
    write_file(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        (errno.ENOSPC, r"No space left on device \(.* free there, 4.0 kB needed\); free space"),
        (errno.EROFS, r"Read-only file system; write somewhere writable"),
        (errno.EACCES, r"Permission denied; write somewhere writable"),
    ],
)
def test_a_refused_write_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch, code, needle):
    target = tmp_path / "trials.csv"
    target.write_text("old")

    def refuse(path, data):
        path.write_bytes(data[:10])  # part of it reached the disk
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files, "_write_bytes", refuse)
    with pytest.raises(WriteFailed, match=f"cannot write {target}: {needle}") as caught:
        write_file(target, b"x" * 4000)
    assert caught.value.errno == code
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv"]  # no .tmp left
